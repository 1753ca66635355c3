"""Issue 17: what analytics gives people. The clerk sees HQ's recommendations in the member profile
with HQ out of reach; a malformed recommendation change is a dead letter; a campaign list holds only
consented members, one row per contact, safe in a spreadsheet, 0600; the HQ monitor shows segments."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from tenpo.cli import main
from tenpo.cloud.analytics.config import AnalyticsConfig
from tenpo.cloud.analytics.export import consented, contact_key
from tenpo.cloud.analytics.job import refresh
from tenpo.cloud.analytics.reports import rfm
from tenpo.cloud.db import Central
from tenpo.cloud.hq.app import HqApp
from tenpo.cloud.hq.config import MonitorConfig
from tenpo.cloud.hq.data import HqData
from tenpo.cloud.hq.segments_screen import SegmentsScreen
from tenpo.cloud.members.store import create_member
from tenpo.edge import db as edge_db
from tenpo.edge import feed
from tenpo.edge.clerk.members import ProfileScreen
from tenpo.shared.protocol import Change, ChangePage
from tests.support.operators import TEST_ADMIN
from tests.test_analytics_data import NOW, Generated, add_sale, seed
from tests.test_clerk_support import CLERK, make_app, make_store, settle, sign_in, type_text

STORE_SKUS = ["TEA-500", "ONIGIRI-S", "UMBRELLA", "TSHIRT-M"]


def _hq_with_store_products(url: str) -> Central:
    """An HQ whose members bought the store fixture's products: M-0001 tea and onigiri long ago, others
    tea with an umbrella or a T-shirt."""
    db = Central(url)
    g, rng = Generated(), random.Random(4)
    with db.transaction():
        for member in ("M-0001", "M-0002", "M-0003"):
            create_member(db, member, "S001", NOW)
        db.executemany("INSERT INTO products(sku, name, price, tax_class, updated_at) VALUES (?, ?, 100, 'standard', ?)",
                       [("TEA-500", "緑茶 500ml", NOW), ("UMBRELLA", "傘 65cm", NOW), ("TSHIRT-M", "Tシャツ M 白", NOW),
                        ("ONIGIRI-S", "おにぎり 鮭", NOW)])  # fmt: skip
        today = dt.date.today()
        for days in (200, 150):
            at = f"{today - dt.timedelta(days=days)}T12:00:00+09:00"
            add_sale(db, g, rng, "M-0001", at, "S001", NOW, ["TEA-500", "ONIGIRI-S"])
        for n in range(8):
            add_sale(db, g, rng, "M-0002" if n % 2 else None, f"{today - dt.timedelta(days=n)}T12:00:00+09:00", "S001", NOW,
                     ["TEA-500", "UMBRELLA"] if n < 5 else ["ONIGIRI-S", "TSHIRT-M"])  # fmt: skip
    return db


async def test_the_clerk_sees_recommendations_in_the_profile_offline(tmp_path: Path) -> None:
    hq = _hq_with_store_products(f"sqlite:///{tmp_path / 'central.db'}")
    refresh(hq, AnalyticsConfig())
    rows = hq.all("SELECT seq, kind, key, data FROM changes WHERE kind = 'member.recommendations' ORDER BY seq")
    data = {key: json.loads(d) for _seq, _kind, key, d in rows}
    assert [i["sku"] for i in data["M-0001"]["items"]][:2] == ["UMBRELLA", "TSHIRT-M"], "bought with tea, then onigiri"
    config = make_store(tmp_path / "store")  # the broker URL points nowhere: the store is offline from here on
    store = edge_db.connect(config.database)
    page = ChangePage(0, len(rows), len(rows), [Change(seq, kind, key, json.loads(d)) for seq, kind, key, d in rows])
    assert feed.apply_page(store, "S001", page).applied == len(rows)
    store.conn.close()
    app = make_app(config)
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f3")
        await type_text(pilot, "サトウ")
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ProfileScreen)
        head = str(app.screen.query_one("#profile-head", Static).render())
        assert "おすすめ recommended: 傘 65cm, Tシャツ M 白" in head


def test_a_malformed_recommendation_change_is_a_dead_letter(tmp_path: Path) -> None:
    config = make_store(tmp_path)
    store = edge_db.connect(config.database)
    good = {"member_id": "M-0002", "items": [{"sku": "TEA-500", "reason": "best-seller"}], "as_of": "2026-06-30"}
    page = ChangePage(0, 3, 3, [
        Change(1, "member.recommendations", "M-0001", {**good, "member_id": "M-0001", "items": [{"sku": "../x", "reason": "r"}]}),
        Change(2, "member.recommendations", "M-0003", {**good, "member_id": "M-0003", "items": "lots"}),
        Change(3, "member.recommendations", "M-0002", good),
    ])  # fmt: skip
    assert feed.apply_page(store, "S001", page).applied == 3
    reasons = [r for (r,) in store.conn.execute("SELECT reason FROM dead_letters ORDER BY id")]
    assert len(reasons) == 2 and reasons[0].startswith("member.recommendations: items[0].sku")
    assert store.conn.execute("SELECT member_id, version FROM member_recommendations").fetchall() == [("M-0002", 3)]
    older = Change(2, "member.recommendations", "M-0002", {**good, "items": []})
    feed.apply_page(store, "S001", ChangePage(0, 4, 4, [Change(4, older.kind, older.key, older.data)]))
    feed.apply_page(store, "S001", ChangePage(3, 3, 4, [older]))  # a replay of an older version changes nothing
    assert json.loads(store.conn.execute("SELECT items FROM member_recommendations").fetchone()[0]) == []


@pytest.fixture
def campaign(tmp_path: Path) -> tuple[str, str, list[str]]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    db = Central(url)
    seed(db, tmp_path)
    config = AnalyticsConfig()
    refresh(db, config, send=False)
    best = [r.member_id for r in rfm(db, config) if r.segment == "休眠" and r.member_id.startswith("G0")]
    assert len(best) >= 4, "store members with no source records: their consent is the golden record's"
    with db.transaction():
        consent = {best[0]: '{"marketing_email": true}', best[1]: '{"marketing_email": true}',
                   best[2]: '{"marketing_email": false}', best[3]: '{"marketing_line": true}'}  # fmt: skip
        emails = {best[0]: "=HYPERLINK(\"http://x\")@example.jp", best[1]: "=hyperlink(\"http://x\")@EXAMPLE.jp",
                  best[2]: "no@example.jp", best[3]: None}  # best[1] shares best[0]'s address  # fmt: skip
        for member in best[:4]:
            db.execute("UPDATE members SET consent = ?, email = ?, name = ?, line_user_id = ? WHERE member_id = ?",
                       (consent[member], emails[member], "+SUM(A1)", f"U{member}", member))  # fmt: skip
    db.close()
    return url, "休眠", best


def test_campaign_export_has_consented_members_once_each_safe_and_private(
        campaign: tuple[str, str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    url, segment, dormant = campaign
    db = Central(url)
    # Only the store form's e-mail consent counts here (the web shop's "Accepts Marketing" is left out).
    config = tmp_path / "analytics.toml"
    config.write_text('[consent]\nemail = ["marketing_email"]\nline = ["marketing_line"]\n', encoding="utf-8")
    out = tmp_path / "exports" / "dormant-email.csv"
    assert main(["cloud", "analytics", "export", "--segment", segment, "--channel", "email", "-o", str(out),
                 "--config", str(config), "--db", url]) == 0  # fmt: skip
    assert out.stat().st_mode & 0o777 == 0o600
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r["member_id"] for r in rows] == [dormant[0]], "one consented address; the refusal and the duplicate left out"
    assert rows[0]["email"].startswith("'=") and rows[0]["name"] == "'+SUM(A1)", "formulas are text in a spreadsheet"
    assert rows[0]["segment"] == segment
    assert main(["cloud", "analytics", "export", "--segment", segment, "--channel", "line", "--config", str(config),
                 "--db", url]) == 0  # fmt: skip
    line_rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["line_user_id"] for r in line_rows] == [f"U{dormant[3]}"]
    assert db.scalar("SELECT count(*) FROM audit_log WHERE action = 'analytics.export'") == 2
    assert main(["cloud", "analytics", "export", "--segment", "nobody", "--channel", "dm", "--db", url]) == 1
    assert "the segments are" in capsys.readouterr().err
    db.close()


async def test_the_hq_monitor_shows_members_per_segment(campaign: tuple[str, str, list[str]]) -> None:
    url, _segment, _members = campaign
    db = Central(url)
    expected: dict[str, int] = {}
    for row in rfm(db, AnalyticsConfig()):
        expected[row.segment] = expected.get(row.segment, 0) + 1
    db.close()
    app = HqApp(HqData(url, MonitorConfig()), operator=TEST_ADMIN)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, SegmentsScreen)
        table = app.screen.query_one("#segments", DataTable)
        for _ in range(200):
            if table.row_count:
                break
            await pilot.pause(0.02)
        shown = {str(table.get_row(key)[0]): int(str(table.get_row(key)[1])) for key in table.rows}
        assert {k: v for k, v in shown.items() if v} == expected
        assert "members with a purchase" in str(app.screen.query_one("#hint", Static).render())


def test_consent_is_the_newest_word_under_the_channels_keys_and_contacts_count_once() -> None:
    keys = ("marketing_email", "marketing:web")
    assert consented(keys, [(1.0, "marketing:web", 1), (2.0, "marketing_email", 0)], {}) is False, "the later refusal wins"
    assert consented(keys, [(3.0, "marketing:web", 1), (2.0, "marketing_email", 0)], {}) is True
    assert consented(keys, [(9.0, "marketing_line", 1)], {"marketing_email": True}) is True, "no word: the golden record"
    assert consented(keys, [], {"marketing_email": True, "marketing:web": False}) is False
    assert consented(keys, [], {}) is False, "nobody is mailed without a yes"
    same = [contact_key("email", {"email": e}) for e in ("Ｈａｎａ@Example.jp ", "hana@example.jp")]
    assert same[0] == same[1]
    assert contact_key("dm", {"postal_code": "150-0001", "address": " "}) is None


@pytest.mark.parametrize("args, code, message", [
    (["rfm", "--as-of", "2026-02-30"], 2, "is not a date"),
    (["rfm", "--store", "../S1"], 2, "is not a store id"),
    (["basket", "--min-support", "2"], 2, "a fraction from 0 to 1"),
    (["recommend", "G/../x"], 1, "is not a valid id"),
    (["export", "--segment", "優良", "--channel", "fax"], 2, "invalid choice"),
])  # fmt: skip
def test_bad_usage_is_one_line_and_no_traceback(sqlite_url: str, capsys: pytest.CaptureFixture[str], args: list[str],
                                                code: int, message: str) -> None:  # fmt: skip
    Central(sqlite_url).close()
    with pytest.raises(SystemExit) if code == 2 else _no_raise() as raised:
        assert main(["cloud", "analytics", *args, "--db", sqlite_url]) == code
    if code == 2:
        assert raised.value.code == 2  # type: ignore[union-attr]
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@contextmanager
def _no_raise() -> Iterator[None]:
    yield None
