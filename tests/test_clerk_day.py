"""A clerk's whole day at the smallest supported terminal (60×20) and at 80×24, through Textual's pilot,
checking the screen at each step: a mis-scan, a quantity, a member by the last four digits of a phone,
a redeem, an offline sale, a refund picked from the receipt and approved by a manager on the spot, a hold
listed, negative stock warned, the dock door, quitting with a basket open, a screenshot for support."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest
from textual.widget import Widget
from textual.widgets import Input, Static, Tab

from tenpo.edge import db as edge_db
from tenpo.edge.clerk.app import MainScreen
from tenpo.edge.clerk.dialogs import ConfirmScreen
from tenpo.edge.clerk.receipt_view import ReceiptScreen
from tenpo.edge.clerk.refund_view import RefundScreen
from tenpo.edge.clerk.stock import ReservationsScreen
from tenpo.edge.clerk.view import FormScreen
from tenpo.edge.outbox import set_meta
from tests.test_clerk_app import cells, fill, scan, text_of, wait_for
from tests.test_clerk_support import (
    CLERK,
    MANAGER,
    ONIGIRI,
    PIN,
    TEA,
    UMBRELLA,
    make_app,
    make_store,
    outbox,
    settle,
    sign_in,
)

SIZES = [(60, 20), (80, 24)]


def set_link(config, online: bool) -> None:
    """What the agent writes about itself: this (live) process as the agent, connected or not."""
    db = edge_db.connect(config.database)
    with edge_db.transaction(db) as conn:
        set_meta(conn, "link", json.dumps({"pid": os.getpid(), "connected": online, "at": time.time()}))
        set_meta(conn, "service.readers", json.dumps({"state": "running", "at": time.time(),
                                                      "session": {"open": False, "reads": 0, "tags": 0}}))  # fmt: skip
        conn.execute("INSERT OR REPLACE INTO remote_stock(store_id, sku, on_hand, as_of, version)"
                     " VALUES ('S002', 'UMBRELLA', 30, ?, 1)", (time.time(),))  # fmt: skip
    db.conn.close()


def on_screen(app, selector: str) -> str:
    """The widget's text, asserting it is laid out inside the terminal (not scrolled or pushed off)."""
    widget: Widget = app.screen.query_one(selector)
    region, size = widget.region, app.size
    assert region.height > 0 and region.width > 0, f"{selector} has no room at {size}"
    assert region.bottom <= size.height and region.right <= size.width, f"{selector} off screen at {size}"
    return str(widget.render()) if isinstance(widget, Static) else ""


def status(app) -> str:
    return on_screen(app, "#status")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_a_clerks_whole_day(tmp_path, size) -> None:
    config = make_store(tmp_path / "S001")
    app = make_app(config)
    async with app.run_test(size=size) as pilot:
        await sign_in(pilot, CLERK)
        assert "offline (agent stopped)" in status(app) and "田中 さくら" in status(app)
        tabs = list(app.screen.query(Tab))
        assert len(tabs) == 6 and all(0 <= tab.region.x and tab.region.right <= size[0] for tab in tabs)
        await pilot.press("f4")
        await settle(pilot)

        # A mis-scan (bad check digit) and an unknown code: refused with the reason, basket unchanged.
        await scan(pilot, TEA)
        await scan(pilot, "4901085089584")
        assert "4901085089584" in on_screen(app, "#till-error") and "(not added)" in text_of(app, "#till-error")
        await scan(pilot, "sku:NO-SUCH")
        assert "NO-SUCH" in text_of(app, "#till-error")
        assert cells(app, "#till-lines") == [["※緑茶 500ml", "1", "¥150", "8%", "¥150"]]
        await scan(pilot, TEA)  # the next scan works
        assert cells(app, "#till-lines")[0][1] == "2" and text_of(app, "#till-error") == ""

        # Quantity typed before the scan, as tills take it; the total stays on screen.
        await scan(pilot, "12*" + ONIGIRI)
        assert cells(app, "#till-lines")[1][:2] == ["※おにぎり 鮭", "12"]
        assert "合計 total ¥2,220" in on_screen(app, "#till-totals") and "due ¥2,220" in text_of(app, "#till-totals")

        # A member by the last four digits of her phone; the points dialog says offline and the cap.
        await pilot.press("f8")
        await settle(pilot)
        await fill(pilot, member="5678")
        assert "佐藤 花子" in on_screen(app, "#till-member")
        await pilot.press("f9")
        await settle(pilot)
        assert "offline" in str(app.screen.query_one(".muted", Static).render())
        assert "1,200 pt" in str(app.screen.query_one(".muted", Static).render())
        on_screen(app, ".dialog")
        await fill(pilot, points="3500")
        error = text_of(app, "#till-error")
        assert "佐藤 花子" in error and "M-0001" not in error  # the member's name, not an internal id
        await pilot.press("f9")
        await settle(pilot)
        await fill(pilot, points="200")
        assert "due ¥2,020" in on_screen(app, "#till-totals")

        # The offline sale: the receipt says so and names the clerk.
        await pilot.press("f10")
        await settle(pilot)
        await fill(pilot, tender="cash", amount="3000")
        assert isinstance(app.screen, ReceiptScreen)
        receipt = text_of(app, "#receipt-text")
        assert "オフライン" in receipt and "担当 田中 さくら" in receipt
        await pilot.press("escape")
        await settle(pilot)

        # HQ comes back: the status line on every panel says so; the points dialog no longer claims offline.
        set_link(config, online=True)
        await wait_for(pilot, lambda: "● online" in str(app.screen.query_one("#status", Static).render()))
        assert "unsent" in status(app)
        await scan(pilot, UMBRELLA)  # the next customer's basket
        await pilot.press("f8")
        await settle(pilot)
        await fill(pilot, member="C200")
        await pilot.press("f9")
        await settle(pilot)
        assert "offline" not in str(app.screen.query_one(".muted", Static).render())
        await pilot.press("escape")
        await settle(pilot)

        # A refund picked from the receipt, a reason, the amount confirmed, a manager approves on the spot.
        await pilot.press("ctrl+r")
        await settle(pilot)
        await fill(pilot, receipt="1")
        assert isinstance(app.screen, RefundScreen)
        on_screen(app, "#refund-amount")
        assert [row[1] for row in cells(app, "#refund-lines")] == ["緑茶 500ml", "おにぎり 鮭"]
        await pilot.press("down", "plus", "plus")
        await settle(pilot)
        assert cells(app, "#refund-lines")[1][4] == "2"
        assert "¥320" in on_screen(app, "#refund-amount")
        await pilot.press("tab", "down", "down", "f10")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen) and "¥320" in text_of(app, "#confirm-body")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, FormScreen) and "manager approval" in app.screen.title_text
        on_screen(app, "#in-pin")
        await fill(pilot, manager=MANAGER, pin=PIN)
        assert isinstance(app.screen, ReceiptScreen) and "返金 refund" in text_of(app, "#receipt-head")
        await pilot.press("escape")
        await settle(pilot)
        assert app.clerk.clerk_id == CLERK  # still the clerk's session, basket and member kept
        assert cells(app, "#till-lines")[0][0] == "傘 65cm" and "鈴木 一郎" in on_screen(app, "#till-member")

        # Ctrl+Q with a basket open asks first; Esc keeps the till.
        await pilot.press("ctrl+q")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen) and "basket is open" in text_of(app, "#confirm-body")
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)

        # Stock: Enter keeps the search box; negative stock is warned; a hold for pickup is listed.
        await pilot.press("f5")
        await settle(pilot)
        await pilot.press(*"おにぎり", "enter")
        await settle(pilot)
        assert app.focused is app.screen.query_one("#stock-query", Input)
        assert "⚠" in cells(app, "#stock-rows")[0][3] and "⚠" in on_screen(app, "#stock-note")
        search = app.screen.query_one("#stock-query", Input)
        search.value = ""
        await pilot.press(*UMBRELLA)
        await settle(pilot)
        await pilot.press("down", "down", "f8")
        await settle(pilot)
        await fill(pilot, qty="1", member="5678", customer="")
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert isinstance(app.screen, ReservationsScreen)
        row = cells(app, "#res-table")[0]
        assert row[1:6] == ["傘 65cm", "1", "S002", "佐藤 花子", "sent · waiting for HQ"]
        await pilot.press("escape")
        await settle(pilot)

        # The dock door: the agent runs with a reader; the bar says what it counts.
        await pilot.press("f6")
        await settle(pilot)
        door = on_screen(app, "#dock-live")
        assert "dock reader running" in door and "agent stopped" not in door
        assert "received of expected units" in on_screen(app, "#dock-progress-label")
        assert "online" in status(app)

        # A screenshot for a support call: SVG under the store's folder, readable by the store account only.
        await pilot.press("f12")
        await settle(pilot)
        shots = list((config.database.parent / "screenshots").glob("*.svg"))
        assert len(shots) == 1 and stat.S_IMODE(shots[0].stat().st_mode) == 0o600
        assert "<svg" in shots[0].read_text(encoding="utf-8")[:200]
    assert [r["total"] for r in outbox(config, "sale.refunded")] == [-320]






