"""The repository's docs stand alone: nothing points at design notes kept outside the repository, and
every relative link in docs/*.md and README.md leads to a file (and heading) that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_DIRS = {".git", ".venv", "build", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache", ".mypy_cache"}

# Spelled in pieces so this file does not match itself.
OUTSIDE_NOTES = re.compile("|".join((r"DESIGN" + r"\.md", r"/work/" + "shared", r"\bresearch" + "/")))
URL = re.compile(r"https?://\S+")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def repository_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files; without git, every file outside the skipped dirs."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return [
            path for path in ROOT.rglob("*")
            if path.is_file() and not SKIPPED_DIRS & set(path.relative_to(ROOT).parts)
            and not any(part.endswith(".egg-info") for part in path.relative_to(ROOT).parts)
        ]  # fmt: skip
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def text_of(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None  # binary
    return data.decode("utf-8", errors="replace")


def outside_mentions(text: str) -> list[str]:
    """Lines naming the outside design notes; a web address that merely contains such a word is fine."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if OUTSIDE_NOTES.search(URL.sub("", line)):
            found.append(f"{number}: {line.strip()[:100]}")
    return found


def test_no_file_points_at_design_notes_outside_the_repository() -> None:
    offenders = []
    for path in repository_files():
        text = text_of(path)
        if text is None:
            continue
        offenders += [f"{path.relative_to(ROOT)}:{hit}" for hit in outside_mentions(text)]
    assert offenders == [], "carry the facts into docs/ and cite public sources instead:\n" + "\n".join(offenders)


def test_the_check_catches_each_form_of_mention_and_spares_web_addresses() -> None:
    for line in ("see " + "DESIGN" + ".md §2", "in " + "/work/" + "shared" + "/x", "../" + "shared/" + "research" + "/rfid.md"):
        assert outside_mentions(line), line
    assert outside_mentions("see https://example.org/" + "research" + "/paper.html") == []


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(heading) for heading in HEADING.findall(text)}


def relative_links(path: Path) -> list[str]:
    text = INLINE_CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    targets = INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors_of(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    return broken


DOCUMENTS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(document: Path) -> None:
    assert broken_links(document) == []


def test_the_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# Two words\n\n## 4. Security rules\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#two-words) [ok](there.md#4-security-rules) [web](https://example.org/x)\n"
        "[gone](missing.md) [no heading](there.md#nowhere)\n"
        "```\n[in code](also-missing.md)\n```\n"
    )
    assert broken_links(page) == ["missing.md: no such file", "there.md#nowhere: no heading #nowhere in there.md"]
