"""HQ's side of a reservation collected at another store, through the real apply path on both databases:
only the holding store may ship it and only to its pickup store; the pickup store hears of it before the
transfer's ASN; only the pickup store may report it arrived; a cancel on the way wins over a late arrival;
the sweep names why a cross-store reservation expired."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenpo.cloud.admin import add_store, import_products
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.changes import record_changes
from tenpo.cloud.channel import reservations
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge import keystore, replica
from tenpo.edge.reservations import store as edge_reservations
from tenpo.shared import crypto
from tenpo.shared.protocol import Event, EventBatch
from tests.test_clerk_support import make_store

TEA = "4901234567894"
HOLDING, PICKUP = "S002", "S001"


@pytest.fixture
def central(central_url: str, tmp_path: Path) -> Iterator[Central]:
    db = Central(central_url)
    (tmp_path / "products.csv").write_text(f"sku,jan,name,price,tax_class\nTEA-500,{TEA},緑茶,150,reduced\n")
    import_products(db, tmp_path / "products.csv")
    for store in ("S001", "S002", "S003"):
        crypto.generate_keypair(tmp_path / f"{store}.key", tmp_path / f"{store}.pub")
        add_store(db, store, crypto.public_key_pem(crypto.load_private_key(tmp_path / f"{store}.key")))
    yield db
    db.close()


class Store:
    """One store's event stream at HQ."""

    def __init__(self, central: Central, store_id: str) -> None:
        self.central, self.store_id, self.seq = central, store_id, 0

    def send(self, *events: tuple[str, dict[str, Any]]) -> None:
        batch = []
        for kind, payload in events:
            self.seq += 1
            batch.append(Event(self.seq, uuid.uuid4().hex, kind, 1, self.seq, payload))
        assert apply_batch(self.central, self.store_id, EventBatch(f"stream-{self.store_id}", batch)).hwm == self.seq


def decided(rid: str, qty: int = 2, **extra: Any) -> dict[str, Any]:
    return {"reservation_id": rid, "sku": "TEA-500", "qty": qty, "at": time.time(), **extra}


def shipped(rid: str, transfer_id: str, to_store: str = PICKUP, qty: int = 2) -> list[tuple[str, dict[str, Any]]]:
    """What the holding store's ship writes, in its order."""
    return [("reservation.shipped", decided(rid, qty, transfer_id=transfer_id, to_store=to_store)),
            ("stock.moved", {"sku": "TEA-500", "delta": -qty, "reason": "transfer-out", "ref": transfer_id}),
            ("transfer.shipped", {"transfer_id": transfer_id, "to_store": to_store,
                                  "lines": [{"sku": "TEA-500", "gtin": TEA.zfill(14), "qty": qty}]})]  # fmt: skip


def reserve(central: Central, key: str, qty: int = 2) -> str:
    now = time.time()
    with central.transaction():
        rid = reservations.next_id(central)
        record, changes = reservations.create(
            central, reservation_id=rid, channel="web", store_id=HOLDING, sku="TEA-500", qty=qty, member_id=None,
            customer=key, pickup_store=PICKUP, hold_s=3600.0, confirm_s=900.0, now=now)  # fmt: skip
        record_changes(central, changes, now)
    assert record["state"] == "requested"
    return rid


def state(central: Central, rid: str) -> dict[str, Any]:
    found = reservations.row(central, rid)
    assert found is not None
    return found


def feed_for(central: Central, store_id: str) -> list[tuple[int, str, str, dict[str, Any]]]:
    rows = central.all("SELECT seq, kind, key, data FROM changes WHERE store_id = ? OR store_id IS NULL ORDER BY seq",
                       (store_id,))  # fmt: skip
    return [(int(seq), kind, key, json.loads(data)) for seq, kind, key, data in rows]


def test_only_the_holding_store_ships_it_and_only_the_pickup_store_receives_it(central: Central) -> None:
    holding, pickup, other = Store(central, HOLDING), Store(central, PICKUP), Store(central, "S003")
    holding.send(("stock.moved", {"sku": "TEA-500", "delta": 3, "reason": "receipt", "ref": "count"}))
    rid = reserve(central, "山田")
    holding.send(("reservation.confirmed", decided(rid)))
    assert state(central, rid)["state"] == "confirmed"

    # Another store cannot ship someone else's hold; the holder cannot send it anywhere but the pickup store.
    other.send(("reservation.shipped", decided(rid, transfer_id="TR-S003-X", to_store=PICKUP)))
    holding.send(("reservation.shipped", decided(rid, transfer_id="TR-S002-Y", to_store="S003")))
    assert (state(central, rid)["state"], state(central, rid)["transfer_id"]) == ("confirmed", None)

    holding.send(*shipped(rid, "TR-S002-1"))
    moving = state(central, rid)
    assert (moving["state"], moving["transfer_id"], moving["shipped_from"], moving["store_id"]) == (
        "in_transit", "TR-S002-1", HOLDING, HOLDING)  # fmt: skip
    assert moving["expires_at"] > time.time() + reservations.TRANSIT_S - 60
    # Held nowhere on the way: the sender's available is what it has left.
    s002 = reservations.stock(central, "TEA-500", HOLDING, time.time())
    assert s002 is not None and (s002.stores[0].on_hand, s002.stores[0].reserved) == (1, 0)
    # The pickup store hears of the reservation before it gets the transfer's ASN.
    seen = [(kind, key) for _seq, kind, key, _data in feed_for(central, PICKUP) if key in (rid, "TR-S002-1")]
    in_transit = ("reservation.upsert", rid)
    assert seen.index(in_transit) < seen.index(("asn.upsert", "TR-S002-1"))
    (change,) = [d for _s, kind, key, d in feed_for(central, PICKUP) if key == rid and d["state"] == "in_transit"]
    assert (change["transfer_id"], change["shipped_from"], change["store_id"]) == ("TR-S002-1", HOLDING, HOLDING)

    # Only the pickup store, and only for that transfer, reports it arrived.
    holding.send(("reservation.arrived", decided(rid, transfer_id="TR-S002-1", held=2)))
    pickup.send(("reservation.arrived", decided(rid, transfer_id="TR-S002-9", held=2)))
    assert state(central, rid)["state"] == "in_transit"
    pickup.send(("reservation.arrived", decided(rid, transfer_id="TR-S002-1", held=2)))
    here = state(central, rid)
    assert (here["state"], here["store_id"], here["qty"], here["reason"]) == ("ready", PICKUP, 2, None)
    assert reservations.answer(here).pickup_store is None, "held where it is collected"
    # Now the pickup store's answers count, the sender's no longer.
    holding.send(("reservation.rejected", decided(rid, reason="too late")))
    assert state(central, rid)["state"] == "ready"
    pickup.send(("reservation.picked_up", decided(rid, receipt_no="S001-000001")))
    assert state(central, rid)["state"] == "picked_up"
    assert central.scalar("SELECT count(*) FROM conflicts") == 0


def test_a_cancel_on_the_way_wins_over_the_arrival_and_the_pickup_store_is_told_again(central: Central) -> None:
    holding, pickup = Store(central, HOLDING), Store(central, PICKUP)
    holding.send(("stock.moved", {"sku": "TEA-500", "delta": 2, "reason": "receipt", "ref": "count"}))
    rid = reserve(central, "佐藤")
    holding.send(("reservation.confirmed", decided(rid)), *shipped(rid, "TR-S002-2"))
    with central.transaction():
        record_changes(central, reservations.cancel(central, state(central, rid), time.time()), time.time())
    assert state(central, rid)["state"] == "cancelled"
    told = len([1 for _s, _k, key, d in feed_for(central, PICKUP) if key == rid and d["state"] == "cancelled"])
    # The pickup store's dock accepted it before it heard: its arrival does not revive the reservation, and the
    # pickup store hears the cancellation again, so it releases what it held.
    pickup.send(("reservation.arrived", decided(rid, transfer_id="TR-S002-2", held=2)))
    assert state(central, rid)["state"] == "cancelled"
    again = len([1 for _s, _k, key, d in feed_for(central, PICKUP) if key == rid and d["state"] == "cancelled"])
    assert again == told + 1


def test_nothing_arrived_rejects_it_and_the_sweep_says_why_it_expired(central: Central) -> None:
    holding, pickup = Store(central, HOLDING), Store(central, PICKUP)
    holding.send(("stock.moved", {"sku": "TEA-500", "delta": 6, "reason": "receipt", "ref": "count"}))
    empty, lost, unsent = reserve(central, "a"), reserve(central, "b"), reserve(central, "c")
    for rid in (empty, lost, unsent):
        holding.send(("reservation.confirmed", decided(rid)))
    holding.send(*shipped(empty, "TR-S002-3"), *shipped(lost, "TR-S002-4"))
    pickup.send(("reservation.arrived", decided(empty, transfer_id="TR-S002-3", held=0)))
    gone = state(central, empty)
    assert (gone["state"], gone["reason"]) == ("rejected", f"short_arrival: 0 of 2 arrived at {PICKUP}")
    (conflict,) = central.all("SELECT kind, subject, level FROM conflicts")
    assert tuple(conflict) == ("reservation-short", empty, -2)

    later = time.time() + reservations.TRANSIT_S + 60
    assert reservations.sweep(central, later) == 2
    assert (state(central, lost)["state"], state(central, lost)["reason"]) == ("expired", "not_received")
    assert (state(central, unsent)["state"], state(central, unsent)["reason"]) == ("expired", "not_shipped")


def test_edge_migration_20_keeps_every_reservation_and_its_sealed_customer(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The store's reservations table is rebuilt to allow in_transit: what a store held before keeps its rows."""

    with monkeypatch.context() as older:  # the tenpo before migration 20
        older.setattr(edge_db, "MIGRATIONS", [m for m in edge_db.MIGRATIONS if m[0] < 20])
        config = make_store(tmp_path)
        db = edge_db.connect(config.database)
        replica.adjust_stock(db, "UMBRELLA", 3, "received")
        with edge_db.transaction(db) as conn:  # a hold as the previous tenpo wrote it
            sealed = keystore.codec(conn).seal("山田 090-1111-2222", "reservations", "customer", "R00000001")
            conn.execute("INSERT INTO reservations(reservation_id, sku, qty, channel, customer, state, expires_at,"
                         " version, created_at, updated_at) VALUES ('R00000001', 'UMBRELLA', 2, 'web', ?, 'confirmed',"
                         " 1900000000.0, 5, 1.0, 1.0)", (sealed,))  # fmt: skip
        db.conn.close()
    db = edge_db.connect(config.database)  # this tenpo: migration 20 runs
    assert edge_db.schema_version(db) >= 20
    kept = edge_reservations.get(db.conn, "R00000001")
    assert kept is not None and (kept.state, kept.qty, kept.customer, kept.transfer_id) == (
        "confirmed", 2, "山田 090-1111-2222", None)  # fmt: skip
    assert edge_reservations.available(db.conn, "UMBRELLA") == 1
    with edge_db.transaction(db) as conn:
        conn.execute("UPDATE reservations SET state = 'in_transit' WHERE reservation_id = 'R00000001'")
    assert edge_reservations.available(db.conn, "UMBRELLA") == 3, "in transit holds nothing here"
    db.conn.close()


def letters(central: Central, store_id: str) -> list[str]:
    return [str(r[0]) for r in central.all("SELECT reason FROM dead_letters WHERE store_id = ? ORDER BY id", (store_id,))]


def test_a_store_acting_on_another_stores_reservation_is_one_dead_letter_each_and_changes_nothing(
        central: Central) -> None:  # fmt: skip
    """S003 ships, reports arrived and answers S002's hold collected at S001: each is a dead letter naming
    reservation-owner and an alert; the reservation is untouched; the rest of S003's batch applies."""
    holding, pickup, rogue = Store(central, HOLDING), Store(central, PICKUP), Store(central, "S003")
    holding.send(("stock.moved", {"sku": "TEA-500", "delta": 3, "reason": "receipt", "ref": "count"}))
    rid = reserve(central, "山田")
    holding.send(("reservation.confirmed", decided(rid)))
    before = state(central, rid)
    rogue.send(("reservation.shipped", decided(rid, transfer_id="TR-S003-X", to_store=PICKUP)),
               ("stock.moved", {"sku": "TEA-500", "delta": 5, "reason": "receipt", "ref": "count"}),
               ("reservation.arrived", decided(rid, transfer_id="TR-S003-X", held=2)),
               ("reservation.rejected", decided(rid, reason="gone")),
               ("reservation.picked_up", decided(rid, receipt_no="S003-000001")))  # fmt: skip
    assert state(central, rid) == before, "nothing changed in the reservation"
    refused = letters(central, "S003")
    assert len(refused) == 4 and all("refused by authority rule reservation-owner" in r for r in refused), refused
    assert [r.split(" (")[0] for r in refused] == ["event 1", "event 3", "event 4", "event 5"]
    assert "S003 shipped reservation" in refused[0] and "held at S002" in refused[0]
    rules = central.all("SELECT rule, event_seq FROM authority_alerts WHERE store_id = 'S003' ORDER BY event_seq")
    assert [tuple(r) for r in rules] == [("reservation-owner", seq) for seq in (1, 3, 4, 5)]
    assert on_hand_of(central, "S003") == 5, "the legitimate event of the same batch applied"
    assert not any(key == rid for _s, _k, key, _d in feed_for(central, "S003")), "S003 hears nothing of it"
    # The holding store and the pickup store carry on as if nothing happened; none of theirs is refused.
    holding.send(*shipped(rid, "TR-S002-1"))
    pickup.send(("reservation.arrived", decided(rid, transfer_id="TR-S002-1", held=2)),
                ("reservation.picked_up", decided(rid, receipt_no="S001-000001")))  # arrived and sold in one batch
    assert (state(central, rid)["state"], state(central, rid)["store_id"]) == ("picked_up", PICKUP)
    assert letters(central, HOLDING) == [] and letters(central, PICKUP) == []


def test_the_holder_shipping_elsewhere_and_the_old_holder_answering_after_arrival_are_refused(
        central: Central) -> None:  # fmt: skip
    holding, pickup = Store(central, HOLDING), Store(central, PICKUP)
    holding.send(("stock.moved", {"sku": "TEA-500", "delta": 2, "reason": "receipt", "ref": "count"}))
    rid = reserve(central, "佐藤")
    holding.send(("reservation.confirmed", decided(rid)),
                 ("reservation.shipped", decided(rid, transfer_id="TR-S002-Y", to_store="S003")))  # fmt: skip
    assert state(central, rid)["state"] == "confirmed"
    holding.send(*shipped(rid, "TR-S002-2"))
    pickup.send(("reservation.arrived", decided(rid, transfer_id="TR-S002-2", held=2)))
    holding.send(("reservation.rejected", decided(rid, reason="too late")))  # no longer its hold
    assert state(central, rid)["state"] == "ready"
    refused = letters(central, HOLDING)
    assert len(refused) == 2 and "to S003: it is collected at S001" in refused[0], refused
    assert "S002 sent rejected for reservation" in refused[1] and "held at S001" in refused[1]


def on_hand_of(central: Central, store_id: str) -> int:
    return int(central.scalar("SELECT coalesce(sum(delta), 0) FROM stock_ledger WHERE store_id = ?", (store_id,), 0))
