"""The clerk terminal's list of reservations held at this store (Stock panel, Ctrl+T): a web shop's reservation
shows up to pick, the clerk marks it ready (r) or rejects it with a reason (x), and each move is an event for HQ."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable

from tenpo.edge import db as edge_db
from tenpo.edge import replica, transfers
from tenpo.edge.clerk.view import FormScreen
from tenpo.edge.reservations import store
from tenpo.edge.reservations.screen import HeldScreen
from tenpo.shared.changes import ReservationUpsert
from tenpo.shared.errors import UserError
from tests.test_clerk_support import CLERK, make_app, make_store, outbox, settle, sign_in, type_text

SIZE = (80, 24)


@pytest.fixture
def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    made = make_store(tmp_path / "S001")
    db = edge_db.connect(made.database)
    sku = db.conn.execute("SELECT sku FROM products ORDER BY sku LIMIT 1").fetchone()[0]
    replica.adjust_stock(db, sku, 3, "received")
    with edge_db.transaction(db) as conn:  # as the feed brings them from HQ: the agent decides each
        for n, qty in ((1, 2), (2, 1)):
            store.apply_upsert(conn, "S001", ReservationUpsert(
                reservation_id=f"R0000000{n}", store_id="S001", sku=sku, qty=qty, state="requested", channel="web",
                customer=f"お客様 {n}", expires_at=1_900_000_000.0), n)  # fmt: skip
    db.conn.close()
    return made


def rows(app) -> list[list[str]]:  # type: ignore[no-untyped-def]
    table = app.screen.query_one("#held-table", DataTable)
    return [[str(getattr(c, "plain", c)) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_the_clerk_marks_a_held_reservation_ready_or_rejects_it(config) -> None:  # type: ignore[no-untyped-def]
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f5", "ctrl+t")
        await settle(pilot)
        assert isinstance(app.screen, HeldScreen)
        shown = {row[0]: row for row in rows(app)}
        assert set(shown) == {"R00000001", "R00000002"}
        assert shown["R00000001"][5] == "to pick" and shown["R00000001"][4] == "お客様 1"
        app.screen.query_one("#held-table", DataTable).move_cursor(row=[r[0] for r in rows(app)].index("R00000001"))
        await pilot.press("r")
        await settle(pilot)
        assert {row[0]: row[5] for row in rows(app)}["R00000001"] == "ready at the counter"
        app.screen.query_one("#held-table", DataTable).move_cursor(row=[r[0] for r in rows(app)].index("R00000002"))
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, FormScreen)
        await type_text(pilot, "damaged")
        await pilot.press("enter")
        await settle(pilot)
        assert [row[0] for row in rows(app)] == ["R00000001"], "a rejected one leaves the list"
    assert [(e["reservation_id"], e["clerk_id"]) for e in outbox(config, "reservation.ready")] == [("R00000001", CLERK)]
    rejected = outbox(config, "reservation.rejected")
    assert [(e["reservation_id"], e["reason"]) for e in rejected] == [("R00000002", "damaged")]


async def test_the_clerk_ships_one_collected_at_another_store_and_it_leaves_the_list(tmp_path: Path) -> None:
    """s on a hold collected at another store: the reservation goes in transit and a transfer takes the units out,
    its event first (HQ tells the pickup store of the reservation before the transfer's ASN)."""
    made = make_store(tmp_path / "S001")
    db = edge_db.connect(made.database)
    replica.adjust_stock(db, "UMBRELLA", 2, "received")
    with edge_db.transaction(db) as conn:
        store.apply_upsert(conn, "S001", ReservationUpsert(
            reservation_id="R00000009", store_id="S001", sku="UMBRELLA", qty=2, state="requested", channel="web",
            pickup_store="S002", customer="お客様 9", expires_at=1_900_000_000.0), 9)  # fmt: skip
    assert store.available(db.conn, "UMBRELLA") == 0
    # A plain transfer may not take units held for a customer; only the reservation's own ship sends them.
    with pytest.raises(UserError, match="2 of the 2 on hand are held for reservations"):
        transfers.create_transfer(db, "S001", to_store="S003", sku="UMBRELLA", qty=1)
    db.conn.close()
    app = make_app(made)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f5", "ctrl+t")
        await settle(pilot)
        (row,) = rows(app)
        assert (row[0], row[6]) == ("R00000009", "to send to S002")
        await pilot.press("s")
        await settle(pilot)
        assert rows(app) == [], "sent: nothing left to do here"
    db = edge_db.connect(made.database)
    shipped = store.get(db.conn, "R00000009")
    assert shipped is not None and shipped.state == "in_transit" and shipped.transit("S001") == "sent to S002"
    assert (store.on_hand(db.conn, "UMBRELLA"), store.reserved(db.conn, "UMBRELLA")) == (0, 0)
    kinds = [r[0] for r in db.conn.execute("SELECT type FROM outbox WHERE type IN ('reservation.shipped',"
                                           " 'transfer.shipped') ORDER BY seq")]  # fmt: skip
    assert kinds == ["reservation.shipped", "transfer.shipped"]
    db.conn.close()
    (payload,) = outbox(made, "reservation.shipped")
    assert (payload["to_store"], payload["transfer_id"], payload["clerk_id"]) == ("S002", shipped.transfer_id, CLERK)
