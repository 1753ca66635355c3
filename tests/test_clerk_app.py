"""The clerk terminal driven by keys through Textual's pilot, on a real store file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rich.cells import cell_len
from textual.widgets import DataTable, Input, Static

from tenpo.edge.clerk.app import MainScreen, SignInScreen
from tenpo.edge.clerk.dialogs import ConfirmScreen
from tenpo.edge.clerk.members import ProfileScreen
from tenpo.edge.clerk.receipt_view import ReceiptScreen
from tenpo.edge.clerk.refund_view import RefundScreen
from tenpo.edge.clerk.view import FormScreen
from tests.test_clerk_support import (
    CLERK,
    MANAGER,
    PIN,
    TEA,
    UMBRELLA,
    make_app,
    make_store,
    outbox,
    scalar,
    settle,
    sign_in,
    type_text,
)

SIZE = (80, 24)


@pytest.fixture
def config(tmp_path: Path):
    return make_store(tmp_path / "S001")


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def cells(app, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(getattr(c, "plain", c)) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def wait_for(pilot, predicate, timeout: float = 10.0) -> None:
    """Until the app shows what another process wrote (the data_version watch runs every 0.5 s)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the panel did not update"
        await asyncio.sleep(0.1)
        await settle(pilot)


# ---------------------------------------------------------------------------- sign-in


async def test_sign_in_good_bad_and_lockout(config) -> None:
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, CLERK, "1357")
        assert isinstance(app.screen, SignInScreen)
        assert "wrong clerk id or PIN (4 tries left" in text_of(app, "#signin-error")
        assert app.screen.query_one("#pin", Input).value == ""  # a wrong PIN is not left in the field
        for _ in range(4):
            await pilot.press(*"1357", "enter")
            await settle(pilot)
        assert "locked for 5 minutes" in text_of(app, "#signin-error")
        await pilot.press(*PIN, "enter")
        await settle(pilot)
        assert "locked after 5 wrong PINs" in text_of(app, "#signin-error") and app.clerk is None
        app.screen.query_one("#clerk-id", Input).value = ""
        app.screen.query_one("#clerk-id", Input).focus()
        await sign_in(pilot, MANAGER, PIN)
        assert isinstance(app.screen, MainScreen) and app.clerk.clerk_id == MANAGER
        assert "山田 店長" in text_of(app, "#status")
        home = text_of(app, "#home-body")
        assert "テンポ 渋谷店" in home and "offline" in home and "store agent not running" in home
        assert "1 clerk id(s) locked" in home
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert isinstance(app.screen, SignInScreen) and app.clerk is None


# ---------------------------------------------------------------------------- members


@pytest.mark.parametrize("query, expected", [("さとう", "M-0001"), ("090-1234-5678", "M-0001"), ("C200", "M-0002"),
                                             ("emma", "M-0003"), ("hanako@EXAMPLE.jp", "M-0001")])  # fmt: skip
async def test_member_search_as_you_type(config, query: str, expected: str) -> None:
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f3")
        await type_text(pilot, query)
        table = app.screen.query_one("#member-results", DataTable)
        assert [key.value for key in table.rows] == [expected]


async def test_opening_a_profile_is_audited_and_shows_points_and_custom_fields(config) -> None:
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f3")
        await type_text(pilot, "サトウ")
        assert outbox(config, "member.viewed") == []  # a search result shows no profile yet
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ProfileScreen)
        head = text_of(app, "#profile-head")
        assert "佐藤 花子" in head and "1,200" in head and "tier: gold" in head and "marketing_email ✓" in head
        events = outbox(config, "member.viewed")
        assert [(e["clerk_id"], e["member_id"], e["action"]) for e in events] == [(CLERK, "M-0001", "view")]
        await pilot.press("f9")  # export: a clerk may not
        await settle(pilot)
        assert outbox(config, "member.viewed")[-1]["action"] == "view"
        assert scalar(config, "SELECT count(*) FROM member_audit WHERE action = 'export'") == 0


async def test_a_manager_exports_a_member_and_the_export_is_audited(config, tmp_path: Path) -> None:
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, MANAGER)
        app.push_screen(ProfileScreen("M-0002"))
        await settle(pilot)
        await pilot.press("f9")
        await settle(pilot)
    exported = json.loads((config.database.parent / "exports" / "member-M-0002.json").read_text(encoding="utf-8"))
    assert exported["member"]["name"] == "鈴木 一郎"
    assert [e["action"] for e in outbox(config, "member.viewed")] == ["view", "view", "export"]


async def register(pilot, **fields: str) -> None:
    await pilot.press("f3", "f8")
    await settle(pilot)
    form = pilot.app.screen
    assert isinstance(form, FormScreen)
    for key, value in fields.items():
        form.query_one(f"#in-{key}", Input).value = value
    form.query_one("#in-card_no", Input).focus()
    await pilot.press("enter")
    await settle(pilot)


async def test_registration_shows_every_bad_field_under_that_field(config) -> None:
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, CLERK)
        await register(pilot, name="  ", kana="sato", phone="12345", email="hanako@", card_no="C100")
        form = app.screen
        errors = {key: str(form.query_one(f"#err-{key}", Static).render())
                  for key in ("name", "kana", "phone", "email", "card_no")}
        assert "kana only" in errors["kana"]
        assert "not a phone number" in errors["phone"] or "not a valid phone number" in errors["phone"]
        assert "not an e-mail address" in errors["email"] or "no valid domain" in errors["email"]
        assert "required" in errors["name"] and errors["card_no"] == ""  # the card is checked once the rest is right
        form.query_one("#in-kana", Input).value = "サトウ"
        form.query_one("#in-phone", Input).value = "03-1234-5678"
        form.query_one("#in-email", Input).value = "x@example.jp"
        form.query_one("#in-name", Input).value = "佐藤 次郎"
        form.query_one("#in-card_no", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert "already belongs to another member" in str(form.query_one("#err-card_no", Static).render())
        assert scalar(config, "SELECT count(*) FROM members") == 3  # nothing written so far
        form.query_one("#in-card_no", Input).value = "C900"
        form.query_one("#in-card_no", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        registered = outbox(config, "member.registered")
        assert registered[0]["phone"] == "+81312345678" and registered[0]["kana"] == "サトウ"
        assert [key.value for key in app.screen.query_one("#member-results", DataTable).rows] == [registered[0]["member_id"]]
        search = app.screen.query_one("#member-query", Input)  # ready for the next search, not a trap
        assert search.value == "C900" and search.cursor_position == len("C900") and app.focused is search


# ---------------------------------------------------------------------------- checkout


async def scan(pilot, *codes: str) -> None:
    for code in codes:
        await pilot.press(*code, "enter")
    await settle(pilot)


async def fill(pilot, **values: str) -> None:
    form = pilot.app.screen
    assert isinstance(form, FormScreen)
    for key, value in values.items():
        form.query_one(f"#in-{key}", Input).value = value
    form.query_one(f"#in-{form.fields[-1].key}", Input).focus()
    await pilot.press("enter")
    await settle(pilot)


async def test_full_checkout_with_a_member_and_points(config) -> None:
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f4")
        await settle(pilot)
        await scan(pilot, TEA, TEA, UMBRELLA)
        assert cells(app, "#till-lines") == [
            ["※緑茶 500ml", "2", "¥150", "8%", "¥300"], ["傘 65cm", "1", "¥1,200", "10%", "¥1,200"],
        ]
        taxes = text_of(app, "#till-tax")
        assert "10%対象 ¥1,200 (税 ¥109)" in taxes and "8%対象 ¥300 (税 ¥22)" in taxes
        assert "合計 total ¥1,500" in text_of(app, "#till-totals")
        await pilot.press("f8")
        await settle(pilot)
        await fill(pilot, member="C100")
        assert "佐藤 花子" in text_of(app, "#till-member") and "1,200 pt" in text_of(app, "#till-member")
        await pilot.press("f9")
        await settle(pilot)
        await fill(pilot, points="3500")  # more than her balance: the engine refuses, shown at once
        assert "cannot redeem" in text_of(app, "#till-error")
        await pilot.press("f9")
        await settle(pilot)
        await fill(pilot, points="200")
        assert text_of(app, "#till-error") == "" and "due ¥1,300" in text_of(app, "#till-totals")
        assert "pt -200" in text_of(app, "#till-totals")
        await pilot.press("f10")
        await settle(pilot)
        await fill(pilot, tender="cash", amount="2000")
        assert isinstance(app.screen, ReceiptScreen)
        assert "お釣り change ¥700" in text_of(app, "#receipt-head")
        assert "合計" in text_of(app, "#receipt-text")
        await pilot.press("f9")  # save the receipt to a file
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert cells(app, "#till-lines") == []  # the next customer starts with an empty basket
    sale = outbox(config, "sale.completed")[0]
    assert sale["total"] == 1500 and sale["points_redeemed"] == 200 and sale["change"] == 700
    assert sale["member_id"] == "M-0001" and sale["points_earned"] == 13
    points = sorted(e["delta"] for e in outbox(config, "points.entry"))
    assert points == [-200, 13]
    assert (config.database.parent / "receipts" / f"{sale['receipt_no']}.txt").exists()


async def test_refund_by_a_clerk_needs_a_manager_on_the_spot(config) -> None:
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f4")
        await settle(pilot)
        await scan(pilot, UMBRELLA)
        await pilot.press("f10")
        await settle(pilot)
        await fill(pilot, tender="card", amount="1200")
        await pilot.press("escape")
        await scan(pilot, TEA)  # the next customer's basket, kept through the refund
        await refund_lines(pilot, "1", picks=("a",))
        await pilot.press("enter")  # confirm the amount
        await settle(pilot)
        assert isinstance(app.screen, FormScreen) and "manager approval" in app.screen.title_text
        await fill(pilot, manager=CLERK, pin=PIN)  # a clerk cannot approve
        assert "not a manager" in str(app.screen.query_one("#form-error", Static).render())
        await fill(pilot, manager=MANAGER, pin="9753")
        assert "wrong clerk id or PIN (4 tries left" in str(app.screen.query_one("#form-error", Static).render())
        await fill(pilot, manager=MANAGER, pin=PIN)
        assert isinstance(app.screen, ReceiptScreen) and "返金 refund" in text_of(app, "#receipt-head")
        assert "担当 田中 さくら" in text_of(app, "#receipt-text")
        await pilot.press("escape")
        await settle(pilot)
        assert app.clerk.clerk_id == CLERK and cells(app, "#till-lines")[0][0] == "※緑茶 500ml"
        await pilot.press("ctrl+r")
        await settle(pilot)
        await fill(pilot, receipt="1")
        assert "already refunded in full" in str(app.screen.query_one("#err-receipt", Static).render())
    refunds = outbox(config, "sale.refunded")
    assert len(refunds) == 1 and refunds[0]["total"] == -1200
    approval = scalar(config, "SELECT action || ' ' || clerk_name || ' ' || manager_name FROM clerk_approvals")
    assert approval == "refund 田中 さくら 山田 店長"


async def refund_lines(pilot, receipt: str, picks: tuple[str, ...], reason_moves: tuple[str, ...] = ()) -> None:
    """Ctrl+R, the receipt number, then keys on the receipt's lines, Tab to the reasons, pick one, F10."""
    await pilot.press("ctrl+r")
    await settle(pilot)
    await fill(pilot, receipt=receipt)
    assert isinstance(pilot.app.screen, RefundScreen)
    await pilot.press(*picks)
    await settle(pilot)
    await pilot.press("tab", "down", *reason_moves, "f10")
    await settle(pilot)


async def test_arrival_starts_a_checkout_with_the_member_attached(config) -> None:
    write_visit(config, "V1", "M-0002", time.time())
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f7")
        await settle(pilot)
        await pilot.press("f8")
        await settle(pilot)
        assert app.screen.active == "checkout"
        assert "鈴木 一郎" in text_of(app, "#till-member")


# ---------------------------------------------------------------------------- stock


def write_remote_stock(config, store_id: str, sku: str, on_hand: int, as_of: float) -> None:
    from tenpo.edge import db as edge_db

    db = edge_db.connect(config.database)
    with edge_db.transaction(db) as conn:
        conn.execute("INSERT OR REPLACE INTO remote_stock(store_id, sku, on_hand, as_of, version) VALUES (?, ?, ?, ?, 1)",
                     (store_id, sku, on_hand, as_of))  # fmt: skip
    db.conn.close()


async def test_stock_lookup_shows_other_stores_and_reserves_for_pickup(config) -> None:
    write_remote_stock(config, "S002", "UMBRELLA", 30, 1_767_225_600.0)
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f5")
        await type_text(pilot, UMBRELLA)
        rows = cells(app, "#stock-rows")
        assert [r[0] for r in rows] == ["S001", "S002"] and rows[0][3] == "0" and rows[0][4] == "live"
        assert rows[1][3] == "30" and rows[1][4] == time.strftime("%m-%d %H:%M", time.localtime(1_767_225_600.0))
        await pilot.press("down", "f9")  # adjust: a clerk needs a manager, asked on the spot
        await settle(pilot)
        assert isinstance(app.screen, FormScreen) and "manager approval" in app.screen.title_text
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        await pilot.press("down", "down", "f8")
        await settle(pilot)
        assert app.screen.query_one("#in-pickup", Input).value == "S001", "collected here unless said otherwise"
        await fill(pilot, qty="2", member="C100", customer="")
        assert isinstance(app.screen, MainScreen)
        # The customer would rather collect at a third store near home: S002 sends it there (a transfer).
        await pilot.press("f8")
        await settle(pilot)
        await fill(pilot, qty="1", member="C100", customer="", pickup="S003")
        assert isinstance(app.screen, MainScreen)
    reservation, elsewhere = outbox(config, "reservation.requested")
    got = (reservation["sku"], reservation["qty"], reservation["from_store"], reservation["member_id"],
           reservation["pickup_store"])  # fmt: skip
    assert got == ("UMBRELLA", 2, "S002", "M-0001", "S001")
    assert (elsewhere["from_store"], elsewhere["pickup_store"]) == ("S002", "S003")


async def test_a_manager_adjusts_stock(config) -> None:
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, MANAGER)
        await pilot.press("f5")
        await type_text(pilot, "傘")
        await pilot.press("down", "f9")
        await settle(pilot)
        await fill(pilot, qty="5", reason="count")
        await settle(pilot)
        assert cells(app, "#stock-rows")[0][3] == "5"
    assert outbox(config, "stock.adjusted")[0]["delta"] == 5


# ---------------------------------------------------------------------------- live panels


def write_visit(config, visit_id: str, member_id: str, at: float) -> None:
    """Another process writes a visit, as the agent's beacon service does."""
    script = textwrap.dedent(f"""
        import sqlite3
        conn = sqlite3.connect({str(config.database)!r}, isolation_level=None)
        conn.execute("INSERT INTO ble_visits(visit_id, member_id, arrived_at) VALUES (?, ?, ?)",
                     ({visit_id!r}, {member_id!r}, {at!r}))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)


async def test_arrivals_update_when_another_process_writes_a_visit(config) -> None:
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f7")
        await settle(pilot)
        assert cells(app, "#arrivals-table") == []
        write_visit(config, "V1", "M-0001", time.time())
        await wait_for(pilot, lambda: len(cells(app, "#arrivals-table")) == 1)
        row = cells(app, "#arrivals-table")[0]
        assert row[1] == "佐藤 花子 様 (サトウハナコ)" and row[2] == "gold" and row[3] == "1,200"
        write_visit(config, "V2", "M-0002", time.time() + 1)
        await wait_for(pilot, lambda: len(cells(app, "#arrivals-table")) == 2)
        assert [r[1].split(" 様")[0] for r in cells(app, "#arrivals-table")] == ["鈴木 一郎", "佐藤 花子"]  # newest first
        # Full-width text is measured in cells: the name column is as wide as its widest name.
        column = app.screen.query_one("#arrivals-table", DataTable).columns["name"]
        assert column.content_width == cell_len("佐藤 花子 様 (サトウハナコ)")
        await pilot.press("up", "enter")  # the cursor stayed on her row when he arrived above it
        await settle(pilot)
        assert isinstance(app.screen, ProfileScreen) and app.screen.member_id == "M-0002"


INSPECTION_SCRIPT = """
import json, sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
verdict = {"store": "S001", "shipment_id": "SHP-1", "matched": ["A", "B", "C"], "missing": ["D"], "unexpected": [],
           "wrong_store": [{"epc": "E", "store": "S002", "shipment_id": "SHP-9"}],
           "gtins": [{"gtin": "04901085089583", "expected": 3, "received": 3, "sku": "TEA-500"},
                     {"gtin": "04560000000029", "expected": 1, "received": 0, "sku": "UMBRELLA"}],
           "expected_units": 4}
now = time.time()
conn.execute("INSERT INTO inspections(inspection_id, shipment_id, status, opened_at, closed_at, reads, tags, verdict,"
             " created_at) VALUES ('S001-I000001', 'SHP-1', 'pending', ?, ?, 40, 4, ?, ?)", (now, now, json.dumps(verdict), now))
"""


async def test_dock_panel_updates_from_another_process_and_a_difference_needs_a_manager(config) -> None:
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f6")
        await settle(pilot)
        assert cells(app, "#dock-list") == []
        subprocess.run([sys.executable, "-c", INSPECTION_SCRIPT, str(config.database)], check=True, timeout=30)
        await wait_for(pilot, lambda: len(cells(app, "#dock-list")) == 1)
        assert cells(app, "#dock-list")[0] == ["S001-I000001", "SHP-1", "pending", "3/4", "1/0/1"]
        assert cells(app, "#dock-gtins") == [["04901085089583", "緑茶 500ml", "3", "3", "ok"],
                                             ["04560000000029", "傘 65cm", "1", "0", "-1"]]  # fmt: skip
        assert "DIFFERENCES" in text_of(app, "#dock-summary")
        await pilot.press("f8")  # accept a delivery that differs: a manager approves on the spot
        await settle(pilot)
        assert isinstance(app.screen, FormScreen) and "manager approval" in app.screen.title_text
        await pilot.press("escape")
        await settle(pilot)
        assert scalar(config, "SELECT status FROM inspections") == "pending"
        await pilot.press("f9")  # hold it for a manager
        await settle(pilot)
        await wait_for(pilot, lambda: cells(app, "#dock-list")[0][2] == "held")
    assert scalar(config, "SELECT decided_by FROM inspections") == CLERK
    assert outbox(config, "inspection.completed")[0]["status"] == "held"


async def test_a_manager_returns_one_of_two_umbrellas_then_the_other(config) -> None:
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, MANAGER)
        await pilot.press("f4")
        await settle(pilot)
        await scan(pilot, "2*" + UMBRELLA)
        await pilot.press("f10")
        await settle(pilot)
        await fill(pilot, tender="card", amount="2400")
        await pilot.press("escape")
        await refund_lines(pilot, "1", picks=("plus",), reason_moves=("down",))
        assert isinstance(app.screen, ConfirmScreen)
        body = text_of(app, "#confirm-body")
        assert "¥1,200" in body and "#1×1" in body and "不良品" in body
        await pilot.press("enter")  # a manager signed in: no approval dialog
        await settle(pilot)
        assert isinstance(app.screen, ReceiptScreen)
        await pilot.press("escape")
        await refund_lines(pilot, "1", picks=())  # nothing picked: no refund, the picker says so
        assert isinstance(app.screen, RefundScreen)
        rows = cells(app, "#refund-lines")
        assert rows[0][2:5] == ["2", "1", "0"]  # sold 2, 1 left, none picked yet
        await pilot.press("a", "f10")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReceiptScreen)
    assert [r["total"] for r in outbox(config, "sale.refunded")] == [-1200, -1200]
    assert scalar(config, "SELECT count(*) FROM clerk_approvals WHERE manager_id = ? AND clerk_id = ?",
                  (MANAGER, MANAGER)) == 2  # fmt: skip
