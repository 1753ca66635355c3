"""Customer text is shown, never obeyed: escapes in names reach the terminal as visible \\uXXXX text,
and CSV exports cannot hand a spreadsheet a formula (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

from textual.widgets import DataTable, Static

from tenpo.cloud.admin import add_store
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.db import Central
from tenpo.cloud.members.imports import import_members
from tenpo.cloud.members.privacy import EXPORT_FIELDS, export_members, export_text
from tenpo.edge import db as edge_db
from tenpo.edge.clerk.members import ProfileScreen
from tenpo.edge.feed import _upsert_members
from tenpo.sandbox import tenpo_command, write_store_config
from tenpo.shared import crypto
from tenpo.shared.changes import MemberUpsert
from tenpo.shared.cleansing import assess_member_record
from tenpo.shared.protocol import Event, EventBatch
from tenpo.shared.terminal import safe_text
from tests.support.clerks import AS_CLERK, PIN_LINE, add_store_clerks
from tests.support.operators import make_operator, stdin_for
from tests.test_clerk_support import CLERK, make_app, make_store, settle, sign_in, type_text

HOSTILE_NAME = "\x1b]0;pwned\x07\x1b[2J佐藤"
SHOWN = "\\u001b]0;pwned\\u0007\\u001b[2J佐藤"
UNSAFE_BYTES = (b"\x1b", b"\x07", "\u009b".encode(), "\u202e".encode())


def tenpo(*args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(tenpo_command(*args), input=stdin, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def assert_shown_not_obeyed(out: bytes) -> None:
    assert not [b for b in UNSAFE_BYTES if b in out], out
    assert SHOWN in out.decode(), out


def test_every_control_and_bidi_character_is_made_visible() -> None:
    assert safe_text("a\u202eb\u2066c\u0085d\x7fe\x9bf\tg\nh") == "a\\u202eb\\u2066c\\u0085d\\u007fe\\u009bf\\u0009g\\u000ah"
    assert safe_text("line 1\r\nline 2\n\tx\ry", multiline=True) == "line 1\r\nline 2\n\tx\\u000dy"
    assert safe_text("佐藤 花子 [b]x[/b]") == "佐藤 花子 [b]x[/b]"


def test_a_hostile_name_from_the_feed_shows_as_escapes_in_edge_member_find(tmp_path: Path) -> None:
    config = write_store_config(tmp_path, "S001", "mqtt://127.0.0.1:1")
    tenpo("edge", "init", "--config", str(config))
    db = edge_db.connect(tmp_path / "S001.db")
    with edge_db.transaction(db) as conn:  # as a rogue store's registration arrives through HQ's feed
        _upsert_members(conn, "S001", [MemberUpsert(member_id="S002-00000001", name=HOSTILE_NAME + "\u202e",
                                                    phone="+819012345678", version=1)], None)  # fmt: skip
    db.conn.close()
    add_store_clerks(tmp_path / "S001.db")
    out = tenpo("edge", "member", "find", "090-1234-5678", "--config", str(config), *AS_CLERK, stdin=PIN_LINE.encode())
    assert_shown_not_obeyed(out)
    as_json = tenpo("edge", "member", "find", "090-1234-5678", "--config", str(config), "--json", *AS_CLERK,
                    stdin=PIN_LINE.encode())  # fmt: skip
    assert not [b for b in UNSAFE_BYTES if b in as_json], as_json
    assert json.loads(as_json)[0]["name"] == HOSTILE_NAME + "\u202e", "JSON keeps the real value"


def test_a_hostile_name_shows_as_escapes_in_cloud_members_show(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    crypto.generate_keypair(tmp_path / "S002.key", tmp_path / "S002.pub")
    central = Central(url)
    add_store(central, "S002", crypto.public_key_pem(crypto.load_private_key(tmp_path / "S002.key")), "Rogue")
    member = {"member_id": "S002-00000001", "name": HOSTILE_NAME, "phone": "+819012345678"}
    apply_batch(central, "S002", EventBatch("s", [Event(1, "e1", "member.registered", 1, 0, member)]))
    central.close()
    make_operator(url, "watcher", "viewer")  # a view of personal data needs a signed-in operator (issue 14)
    assert_shown_not_obeyed(tenpo("cloud", "members", "show", "S002-00000001", "--db", url, "--operator", "watcher",
                                  stdin=stdin_for(None).encode()))  # fmt: skip


FORMULAS = ['=HYPERLINK("x")', "+cmd|' /C calc'!A0", "-1+1", "@SUM(1)", "\t=x", "\r=x"]


def test_a_csv_export_quotes_every_formula_leading_cell() -> None:
    records = [{"member_id": f"G{i}", "name": cell, "kana": None, "phone": "+819012345678", "email": None,
                "points": -50, "sources": [{"source": "pos", "source_id": str(i)}]}
               for i, cell in enumerate(FORMULAS)]  # fmt: skip
    fields = [{**dict.fromkeys(EXPORT_FIELDS[:-1]), **r} for r in records]
    rows = list(csv.DictReader(io.StringIO("".join(export_text(iter(fields), "csv")), newline="")))
    assert [row["name"] for row in rows] == ["'" + cell for cell in FORMULAS]
    assert {row["phone"] for row in rows} == {"'+819012345678"}, "a text cell with a leading + is quoted too"


def test_an_import_keeps_a_tab_before_a_formula_raw_and_flags_it() -> None:
    clean, quality = assess_member_record({"name": "\t=x", "phone": " +81 90-1234-5678", "email": "a@example.jp"})
    assert clean["name"] is None, "never trimmed into =x"
    assert quality["name"].raw == "\t=x" and "formula" in (quality["name"].reason or "")
    assert clean["phone"] == "+819012345678", "a phone number with a leading blank is not a formula"


async def test_the_clerk_terminal_shows_a_hostile_name_as_text_not_markup_or_escapes(tmp_path: Path) -> None:
    config = make_store(tmp_path / "S001")
    db = edge_db.connect(config.database)
    name = "[bold red]佐藤[/] " + HOSTILE_NAME
    with edge_db.transaction(db) as conn:
        _upsert_members(conn, "S001", [MemberUpsert(member_id="S002-00000001", name=name, phone="+819055556666",
                                                    version=1)], None)  # fmt: skip
    db.conn.close()
    app = make_app(config)
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f3")
        await type_text(pilot, "090-5555-6666")
        table = app.screen.query_one("#member-results", DataTable)
        shown = " ".join(str(getattr(c, "plain", c)) for c in table.get_row_at(0))
        assert shown.startswith("[bold red]佐藤[/] \\u001b]") and "\x1b" not in shown, shown  # cut to the column
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ProfileScreen)
        head = str(app.screen.query_one("#profile-head", Static).render())
        assert "[bold red]佐藤[/] " + SHOWN in head and "\x1b" not in head, head


def test_importing_a_tab_before_a_formula_never_yields_the_formula(tmp_path: Path) -> None:
    source = tmp_path / "legacy.csv"
    source.write_text('source,source_id,name,phone\nlegacy,1,"\t=x",090-1234-5678\nlegacy,2,=y,090-2222-3333\n',
                      encoding="utf-8")  # fmt: skip
    db = Central(f"sqlite:///{tmp_path / 'central.db'}")
    try:
        report = import_members(db, source)
        assert [row.status for row in report.rows] == ["created", "created"]
        quality = json.loads(db.scalar("SELECT field_quality FROM member_sources WHERE source_id = '1'"))
        assert quality["name"]["status"] == "flagged" and quality["name"]["raw"] == "\t=x", quality
        exported = list(csv.DictReader(io.StringIO("".join(export_text(export_members(db), "csv")), newline="")))
    finally:
        db.close()
    assert sorted(row["name"] for row in exported) == ["", "'=y"], "no cell a spreadsheet would run"
