"""お取り寄せ for home delivery (issue 18 §7): the clerk at S001 orders the size S002 has, delivered to the customer's
home. Through Mosquitto with real agents and an aggregator: HQ reserves it at S002, S002 sees the address and ships
it as a sale paid on delivery (the stock leaves S002 once, as a sale), S001 sees it shipped; the address rests
sealed. And the clerk terminal's F10 on another store's row, at 80×24."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from tenpo.edge import db as edge_db
from tenpo.edge import deliveries, replica
from tenpo.edge.clerk.view import FormScreen
from tenpo.edge.reservations import store as reservations
from tenpo.sandbox import wait_until
from tests.test_channel_support import CLERK, PIN, Chain, chain, tenpo  # noqa: F401  (fixture)
from tests.test_clerk_support import CLERK as TERMINAL_CLERK
from tests.test_clerk_support import UMBRELLA, make_app, make_store, outbox, settle, sign_in, type_text

ADDRESS = "〒150-0001 東京都渋谷区神宮前1-2-3 ハイツ101"
PRICE = 2480  # TSHIRT-M


def edge(where: Chain, store_id: str, *args: str) -> tuple[int, object]:
    done = tenpo("edge", *args, "--config", str(where.configs[store_id]), "--json", stdin=f"{PIN}\n")
    return done.returncode, json.loads(done.stdout) if done.returncode == 0 else done.stderr


def order(where: Chain, qty: int, member: str | None = None) -> dict[str, object]:
    code, found = edge(where, "S001", "deliver", "--sku", "TSHIRT-M", "--from", "S002", "--qty", str(qty),
                       "--customer", "山田 花子", "--address", ADDRESS, "--phone", "090-1234-5678", "--clerk", CLERK,
                       *(("--member", member) if member else ()))  # fmt: skip
    assert code == 0, found
    assert isinstance(found, dict)
    return found


def test_a_delivery_is_held_at_the_other_store_shipped_as_a_sale_and_seen_shipped_where_it_was_ordered(
    chain: Chain,  # noqa: F811 (imported fixture)
) -> None:
    chain.receive("S002", "TSHIRT-M", 2)
    member = replica.register_member(chain.db("S001"), "S001", name="佐藤 花子", kana="サトウハナコ")
    wait_until(lambda: chain.db("S002").conn.execute("SELECT 1 FROM members WHERE member_id = ?", (member,)).fetchone(),
               30, what="the member at S002")  # fmt: skip
    rid = str(order(chain, 1, member)["reservation_id"])

    # The address rests sealed at the ordering store (its outbox too: the terminal's test below).
    s001 = chain.db("S001").conn
    assert "神宮前".encode() not in bytes(s001.execute("SELECT address FROM deliveries").fetchone()[0])

    # HQ holds it at S002, which confirms against its live ledger; S002 has the address to ship to.
    wait_until(lambda: chain.hq_state(rid) == "confirmed", 30, what="S002 to confirm the delivery")
    assert chain.central.one("SELECT ordered_at, store_id, address FROM deliveries WHERE reservation_id = ?",
                             (rid,)) == ("S001", "S002", ADDRESS)  # fmt: skip
    code, to_ship = edge(chain, "S002", "deliveries", "--to-ship", "--active")
    assert code == 0 and isinstance(to_ship, list) and len(to_ship) == 1
    assert {k: to_ship[0][k] for k in ("reservation_id", "role", "other_store", "customer", "address", "phone",
                                       "status")} == {  # fmt: skip
        "reservation_id": rid, "role": "ship", "other_store": "S001", "customer": "山田 花子", "address": ADDRESS,
        "phone": "090-1234-5678", "status": "confirmed"}  # fmt: skip
    assert reservations.available(chain.db("S002").conn, "TSHIRT-M") == 1, "held for the delivery"

    # Shipping is a sale at S002, paid on delivery: the stock leaves through the sale, once.
    code, shipped = edge(chain, "S002", "delivery", "ship", rid, "--clerk", CLERK)
    assert code == 0 and isinstance(shipped, dict), shipped
    paid = [{"tender": "cod", "amount": PRICE}]  # on delivery: the carrier collects the sale's total
    assert (shipped["status"], shipped["total"], shipped["paid"]) == ("shipped", PRICE, paid)
    receipt = shipped["receipt_no"]
    s002 = chain.db("S002").conn
    assert s002.execute("SELECT delta, reason, ref FROM stock_ledger WHERE sku = 'TSHIRT-M' AND reason = 'sale'"
                        ).fetchall() == [(-1, "sale", receipt)]  # fmt: skip
    assert reservations.on_hand(s002, "TSHIRT-M") == 1 and reservations.available(s002, "TSHIRT-M") == 1
    code, again = edge(chain, "S002", "delivery", "ship", rid, "--clerk", CLERK)
    assert code == 1 and "nothing to ship" in str(again), "a second ship sells nothing"

    wait_until(lambda: chain.hq_state(rid) == "picked_up" and chain.hq_on_hand("S002", "TSHIRT-M") == 1, 30,
               what="HQ to see it shipped")  # fmt: skip
    assert chain.central.scalar("SELECT receipt_no FROM reservations WHERE reservation_id = ?", (rid,)) == receipt
    assert chain.central.scalar("SELECT member_id FROM sales WHERE receipt_no = ?", (receipt,)) == member
    wait_until(lambda: deliveries.get(chain.db("S001").conn, rid).status == "shipped", 30,  # type: ignore[union-attr]
               what="S001 to see it shipped")  # fmt: skip


def test_a_delivery_beyond_what_the_other_store_has_is_refused_and_never_reaches_it(chain: Chain) -> None:  # noqa: F811
    chain.receive("S002", "TSHIRT-M", 1)
    rid = str(order(chain, 3)["reservation_id"])
    wait_until(lambda: chain.hq_state(rid) == "rejected", 30, what="HQ to refuse it")
    wait_until(lambda: deliveries.get(chain.db("S001").conn, rid).status == "rejected", 30,  # type: ignore[union-attr]
               what="S001 to hear the refusal")  # fmt: skip
    code, listed = edge(chain, "S002", "deliveries")
    assert code == 0 and listed == [], "the address of a refused delivery never goes to the other store"
    code, refused = edge(chain, "S001", "deliver", "--sku", "TSHIRT-M", "--from", "S001", "--customer", "x",
                         "--address", "y", "--clerk", CLERK)  # fmt: skip
    assert code == 1 and "sell it here" in str(refused)


def test_erasing_the_member_at_hq_takes_the_address_from_both_stores(chain: Chain) -> None:  # noqa: F811
    """Right to erasure: HQ blanks the delivery and sends member.erase; the ordering store and the shipping store
    forget the name, address and phone (and the reservation's customer), and keep what was ordered."""
    from tenpo.cloud.members.privacy import erase_member

    chain.receive("S002", "TSHIRT-M", 1)
    member = replica.register_member(chain.db("S001"), "S001", name="佐藤 花子", kana="サトウハナコ")
    wait_until(lambda: chain.central.scalar("SELECT 1 FROM members WHERE member_id = ?", (member,)), 30,
               what="the member at HQ")  # fmt: skip
    rid = str(order(chain, 1, member)["reservation_id"])
    wait_until(lambda: chain.hq_state(rid) == "confirmed", 30, what="S002 to confirm the delivery")
    shipper = deliveries.get(chain.db("S002").conn, rid)
    assert shipper is not None and shipper.address == ADDRESS

    done = erase_member(chain.central, member, "the customer asked")
    assert done["deliveries_erased"] == 1
    assert chain.central.one("SELECT customer, address, phone FROM deliveries WHERE reservation_id = ?",
                             (rid,)) == ("", "", None)  # fmt: skip
    for store_id in ("S002", "S001"):
        wait_until(lambda at=store_id: deliveries.get(chain.db(at).conn, rid).erased, 30,  # type: ignore[union-attr,misc]
                   what=f"{store_id} to erase the delivery")  # fmt: skip
        gone = deliveries.get(chain.db(store_id).conn, rid)
        assert gone is not None and (gone.customer, gone.address, gone.phone) == ("", "", None)
        assert (gone.sku, gone.qty, gone.member_id) == ("TSHIRT-M", 1, member), "what was ordered stays"
    held = reservations.get(chain.db("S002").conn, rid)
    assert held is not None and held.customer is None and held.state == "confirmed"
    asked = chain.db("S001").conn.execute("SELECT customer FROM pickup_reservations WHERE reservation_id = ?",
                                          (rid,)).fetchone()  # fmt: skip
    assert asked == (None,), "nor the ordering store's list of what it asked for"
    code, refused = edge(chain, "S002", "delivery", "ship", rid, "--clerk", CLERK)
    assert code == 1 and "erased" in str(refused), "nowhere to ship it any more"
    listed = tenpo("edge", "deliveries", "--config", str(chain.configs["S002"]), stdin=f"{PIN}\n").stdout
    assert "(erased at the customer's request)" in listed and "神宮前" not in listed, listed


# ---------------------------------------------------------------------------- the clerk terminal


@pytest.fixture
def terminal(tmp_path: Path):  # type: ignore[no-untyped-def]
    made = make_store(tmp_path / "S001")
    db = edge_db.connect(made.database)
    with edge_db.transaction(db) as conn:  # S002's stock as HQ last reported it
        conn.execute("INSERT INTO remote_stock(store_id, sku, on_hand, as_of, version) VALUES ('S002', 'UMBRELLA', 4, ?, 1)",
                     (time.time(),))  # fmt: skip
    db.conn.close()
    return made


def cells(app, selector: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    table = app.screen.query_one(selector, DataTable)
    return [[str(getattr(c, "plain", c)) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_the_clerk_orders_another_stores_size_for_home_delivery_at_80x24(terminal) -> None:  # type: ignore[no-untyped-def]
    app = make_app(terminal)
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot, TERMINAL_CLERK)
        await pilot.press("f5")
        await type_text(pilot, UMBRELLA)  # its JAN
        assert [r[0] for r in cells(app, "#stock-rows")] == ["S001", "S002"]
        await pilot.press("down", "f10")  # this store's own row: nothing to deliver from elsewhere
        await settle(pilot)
        assert not isinstance(app.screen, FormScreen)
        await pilot.press("down", "f10")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, FormScreen) and "deliver" in form.title_text
        for key in ("qty", "member", "customer", "address", "phone"):  # every field on the 80×24 screen
            region = form.query_one(f"#in-{key}", Input).region
            assert region.height > 0 and region.bottom <= 24 and region.right <= 80, key
        for key, value in (("member", "C100"), ("customer", "山田 花子"), ("address", ADDRESS), ("phone", "")):
            form.query_one(f"#in-{key}", Input).value = value
        form.query_one("#in-phone", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, FormScreen), "sent"
    sent = outbox(terminal, "delivery.requested")
    db = edge_db.connect(terminal.database)
    stored = db.conn.execute("SELECT payload FROM outbox WHERE type = 'delivery.requested'").fetchone()[0]
    assert stored.startswith("sealed:") and "神宮前" not in stored, "the address rests sealed in the outbox"
    assert len(sent) == 1
    assert {k: sent[0][k] for k in ("sku", "qty", "from_store", "member_id", "customer", "address", "phone")} == {
        "sku": "UMBRELLA", "qty": 1, "from_store": "S002", "member_id": "M-0001", "customer": "山田 花子",
        "address": ADDRESS, "phone": None}  # fmt: skip
    listed = deliveries.listing(db)
    assert [(d.reservation_id, d.role, d.other_store, d.status, d.address) for d in listed] == [
        (sent[0]["reservation_id"], "ordered", "S002", "requested", ADDRESS)]  # fmt: skip
    db.conn.close()
