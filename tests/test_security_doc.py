"""docs/security.md names a test for each control: every one it names exists, so the threat model
cannot quietly point at a test that was renamed or removed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"`(test_[a-z_0-9]+\.py)::(test_[a-z_0-9]+)`")


def test_every_test_the_threat_model_cites_exists() -> None:
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    cited = set(CITED.findall(text))
    assert len(cited) > 40, "the threat model cites its tests as file::function"
    missing = [f"{file}::{name}" for file, name in sorted(cited)
               if not (ROOT / "tests" / file).is_file()
               or not re.search(rf"^(async )?def {name}\b", (ROOT / "tests" / file).read_text(encoding="utf-8"), re.M)]
    assert missing == []
