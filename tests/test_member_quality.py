"""The data-quality report (issue 16 §5): per source and field the shares of valid, corrected,
unverified, flagged and missing values, duplicates merged, pending reviews, the trend across imports,
and a PNG chart."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.cloud.db import Central
from tenpo.cloud.members.imports import import_members
from tenpo.sandbox import tenpo_command

HEADER = "source,source_id,name,kana,email,phone,postal_code,address,birth_date,card_no\n"
FIRST = (
    "legacy,1,山田 太郎,ヤマダタロウ,u1@@example.jp,090-1234-5678,,,,\n"  # e-mail corrected (doubled @)
    "legacy,2,佐藤 花子,,hanako@example.jp,04-9164-7881,,,1990-13-45,\n"  # phone unverified, birth date flagged
    "legacy,3,高橋 健,タカハシケン,,,,,,\n"
    "web,w1,山田 太郎,ヤマダタロウ,,090-1234-5678,,,,\n"  # the same person as legacy:1 (phone and name)
    "web,w2,高橋 健,タカハシケン,ken@example.jp,,,,,\n"  # maybe legacy:3: name only -> review
)
SECOND = "legacy,4,鈴木 一郎,スズキイチロウ,ichiro@example.jp,080-1111-2222,1500001,東京都渋谷区神宮前1-2-3,1970-01-01,\n"


@pytest.fixture
def url(tmp_path: Path, sqlite_url: str) -> str:
    db = Central(sqlite_url)
    (tmp_path / "first.csv").write_text(HEADER + FIRST, encoding="utf-8")
    (tmp_path / "second.csv").write_text(HEADER + SECOND, encoding="utf-8")
    import_members(db, tmp_path / "first.csv")
    import_members(db, tmp_path / "second.csv")
    return sqlite_url


def test_quality_numbers_per_source_and_field(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["cloud", "members", "quality", "--db", url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["records"], report["members"], report["duplicates_merged"], report["pending_reviews"]) == (6, 5, 1, 1)
    legacy, web = report["sources"]
    assert (legacy["source"], legacy["records"], legacy["merged_duplicates"], legacy["pending_reviews"]) == ("legacy", 4, 1, 1)
    assert (web["source"], web["records"], web["merged_duplicates"], web["pending_reviews"]) == ("web", 2, 1, 1)
    email = legacy["fields"]["email"]["counts"]
    assert (email["valid"], email["corrected"], email["missing"]) == (2, 1, 1)
    assert legacy["fields"]["email"]["shares"]["corrected"] == 0.25
    phone = legacy["fields"]["phone"]["counts"]
    assert (phone["valid"], phone["unverified"], phone["missing"]) == (2, 1, 1)
    birth = legacy["fields"]["birth_date"]["counts"]
    assert (birth["valid"], birth["flagged"], birth["missing"]) == (1, 1, 2)
    assert web["fields"]["name"]["shares"]["valid"] == 1.0 and web["fields"]["email"]["shares"]["missing"] == 0.5
    first, second = report["trend"]
    assert (first["file"], first["rows"], first["rejected"], second["rows"]) == ("first.csv", 5, 0, 1)
    # first.csv: 5 rows x 8 fields = 40 values, 16 given: 1 corrected, 1 unverified, 1 flagged, 13 valid.
    assert first["shares"]["missing"] == round(24 / 40, 4)
    assert first["present_shares"]["corrected"] == round(1 / 16, 4)
    assert second["present_shares"]["valid"] == 1.0


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_chart_is_a_png_of_the_report(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "quality.png"
    assert main(["cloud", "members", "quality", "--db", url, "--chart", str(chart)]) == 0
    out = capsys.readouterr().out
    assert "legacy" in out and "import #2 second.csv" in out and f"chart: {chart}" in out
    data = chart.read_bytes()
    width, height = _png_size(data)
    assert width >= 1000 and height >= 400  # 13 inches at 100 dpi; one bar per source and field
    assert len(data) > 20_000


def test_the_tenpo_command_draws_the_chart(url: str, tmp_path: Path) -> None:
    """The command line loads numpy for matplotlib though it blocks pandas (tenpo/__init__.py)."""
    chart = tmp_path / "quality.png"
    done = subprocess.run(tenpo_command("cloud", "members", "quality", "--db", url, "--chart", str(chart)),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"chart: {chart}" in done.stdout
    assert _png_size(chart.read_bytes())[0] >= 1000


def test_quality_of_a_missing_database_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cloud", "members", "quality", "--db", f"sqlite:///{tmp_path / 'none.db'}"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_a_chart_that_cannot_be_written_is_one_line(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "no-such-folder" / "quality.png"
    assert main(["cloud", "members", "quality", "--db", url, "--chart", str(chart)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "cannot write" in err
