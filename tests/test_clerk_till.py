"""Checkout details and the terminal's own keys: quantity and line discount (with a manager's approval),
quitting, the command palette, the dock's accepted delivery; the pure parsers behind them."""

from __future__ import annotations

import json
import time

import pytest

from tenpo.edge import agent
from tenpo.edge import db as edge_db
from tenpo.edge.checkout.model import Discount, DiscountKind, Scan
from tenpo.edge.clerk import data as clerk_data
from tenpo.edge.clerk.app import PALETTE_ACTIONS, PANELS
from tenpo.edge.clerk.dialogs import ConfirmScreen
from tenpo.edge.clerk.till import parse_entry, parse_line_discount
from tenpo.edge.clerk.view import FormScreen
from tenpo.shared.errors import UserError
from tests.test_clerk_app import cells, fill, scan, text_of, write_visit
from tests.test_clerk_support import CLERK, MANAGER, PIN, TEA, UMBRELLA, make_app, make_store, scalar, settle, sign_in

SIZES = [(60, 20), (80, 24)]


@pytest.fixture
def config(tmp_path):
    return make_store(tmp_path / "S001")


def test_quantity_and_discount_entry_parse_as_a_till_takes_them() -> None:
    assert parse_entry("12*4901085089583") == Scan("4901085089583", 12)
    assert parse_entry("１２＊4901085089583") == Scan("4901085089583", 12)  # full-width from an IME
    assert parse_entry("4901085089583") == Scan("4901085089583")
    for bad in ("0*4901085089583", "x*4901085089583", "1000*4901085089583", "3*"):
        with pytest.raises(UserError):
            parse_entry(bad)
    assert parse_line_discount("@800", 1200, 2) == Discount(DiscountKind.AMOUNT, 800, "price override")
    assert parse_line_discount("10%", 1200, 1).kind is DiscountKind.PERCENT
    with pytest.raises(UserError):
        parse_line_discount("@1500", 1200, 1)  # an override above the price is not a discount


def test_the_dock_reads_the_reader_service_under_the_name_the_agent_reports_it() -> None:
    assert clerk_data.READER_SERVICE_META.removeprefix("service.") in [name for name, _ in agent.SERVICES]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_quantity_key_and_a_manager_approved_line_discount(config, size) -> None:
    app = make_app(config)
    async with app.run_test(size=size) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f4")
        await settle(pilot)
        await scan(pilot, TEA, UMBRELLA)
        await pilot.press("ctrl+t")  # the last line when none is selected
        await settle(pilot)
        await fill(pilot, qty="3")
        assert cells(app, "#till-lines")[1][:2] == ["傘 65cm", "3"]
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert isinstance(app.screen, FormScreen) and "manager approval" in app.screen.title_text
        await fill(pilot, manager=MANAGER, pin=PIN)
        await fill(pilot, discount="@1000")  # a new unit price: ¥200 off each of three
        assert cells(app, "#till-lines")[1][4] == "¥3,000 値引"
        assert "合計 total ¥3,150" in text_of(app, "#till-totals")
        await pilot.press("f10")
        await settle(pilot)
        await fill(pilot, tender="cash", amount="3150")
    assert scalar(config, "SELECT clerk_id || '/' || manager_id || ' ' || detail FROM clerk_approvals"
                  " WHERE action = 'line_discount'") == f"{CLERK}/{MANAGER} UMBRELLA x3 @1000"  # fmt: skip


async def test_ctrl_q_quits_at_once_with_no_basket_and_the_palette_lists_every_action(config) -> None:
    app = make_app(config)
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot, CLERK)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert all(title in titles for _, title, _, _ in PALETTE_ACTIONS)
        assert all(f"Go to {label}" in titles for _, label, _, _ in PANELS) and "Quit (Ctrl+Q)" in titles
        for panel, _title, action, _help in PALETTE_ACTIONS:  # each names an action its panel has
            assert callable(getattr(app.screen.query_one(f"#{panel}"), f"action_{action}"))
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"Refund")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, FormScreen) and "which receipt" in app.screen.title_text
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("ctrl+q")
        await settle(pilot)
    assert app.return_code == 0 and not app.is_running


ACCEPTED = {"store": "S001", "shipment_id": "SHP-1", "matched": ["A"], "missing": ["D"], "unexpected": [],
            "wrong_store": [], "gtins": [{"gtin": "04560000000029", "expected": 2, "received": 1, "sku": "UMBRELLA"}],
            "expected_units": 2}  # fmt: skip


async def test_an_accepted_delivery_is_not_said_to_need_a_manager(config) -> None:
    db = edge_db.connect(config.database)
    now = time.time()
    with edge_db.transaction(db) as conn:
        conn.execute("INSERT INTO inspections(inspection_id, shipment_id, status, opened_at, closed_at, reads, tags,"
                     " verdict, created_at, decided_by, decided_at) VALUES ('S001-I000001', 'SHP-1', 'accepted', ?, ?,"
                     " 4, 1, ?, ?, '1001', ?)", (now, now, json.dumps(ACCEPTED), now, now))  # fmt: skip
    db.conn.close()
    app = make_app(config)
    async with app.run_test(size=(60, 20)) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f6")
        await settle(pilot)
        summary = text_of(app, "#dock-summary")
        assert "accepted by 1001" in summary and "manager" not in summary
        await pilot.press("f8")
        await settle(pilot)
        assert not isinstance(app.screen, FormScreen)  # no approval asked for what is already accepted
        assert any("already accepted" in n.message for n in app._notifications)
        assert "received 1 of 2 expected units" in text_of(app, "#dock-progress-label")


def test_the_last_four_digits_of_a_phone_find_members_through_an_index(config) -> None:
    data = clerk_data.ClerkData(config)
    try:
        assert [m.member_id for m in data.search_members("5678")] == ["M-0001"]
        assert [m.member_id for m in data.search_members("５６７８")] == ["M-0001"]  # full-width from an IME
        assert data.search_members("9999") == []
        # The phone is sealed at rest (issue 14): the last four digits are found through their blind index.
        plan = " ".join(str(row) for row in data.db.conn.execute(
            "EXPLAIN QUERY PLAN SELECT member_id FROM members WHERE phone4_idx = ? AND erased = 0", (b"x",)))  # fmt: skip
        assert "members_phone4_idx" in plan
        card_holder = data.register_member({"name": "高橋 誠", "kana": "タカハシ", "card_no": "5678"})
        assert data.resolve_member("5678").member_id == card_holder  # a card typed in full beats a phone's tail
    finally:
        data.close()


async def test_checkout_for_an_arrival_keeps_an_open_basket(config) -> None:
    write_visit(config, "V1", "M-0002", time.time())
    app = make_app(config)
    async with app.run_test(size=(60, 20)) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f4")
        await settle(pilot)
        await scan(pilot, TEA)
        await pilot.press("f7")
        await settle(pilot)
        await pilot.press("f8")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")
        await settle(pilot)
        assert cells(app, "#till-lines")[0][0] == "※緑茶 500ml" and "鈴木 一郎" in text_of(app, "#till-member")
