"""Held at one store, collected at another (issue 18 §3/§6): the web shop reserves at S002 for pickup at S001,
S002's agent confirms, S002's clerk ships it (a transfer through HQ's ASN), S001's dock inspection receives
it and holds it in the same transaction, S001's checkout hands it over. A short delivery holds what came and
is flagged at HQ; a reservation cancelled on the way leaves the units at S001 as its stock. Real Mosquitto,
a real aggregator and real store agents."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenpo.cloud.sales import conflicts
from tenpo.edge.inspection import store as inspection
from tenpo.edge.reservations import store as edge_reservations
from tenpo.sandbox import Mosquitto, wait_until
from tenpo.shared.epc import encode_sgtin96
from tests.test_channel_reservations import edge_stock
from tests.test_channel_support import CLERK, PIN, Chain, running_chain, tenpo
from tests.test_transfers import arrived

TEA = "4901234567894"
PRODUCTS = f"sku,jan,name,price,tax_class\nTEA-500,{TEA},緑茶 500ml,150,reduced\n"
HOLDING, PICKUP = "S002", "S001"


@pytest.fixture
def chain(tmp_path: Path, broker: Mosquitto, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Chain]:
    yield from running_chain(tmp_path, broker, sqlite_url, monkeypatch, products_csv=PRODUCTS)


def reserve_for_pickup_elsewhere(chain: Chain, qty: int, key: str) -> dict[str, object]:
    done = tenpo("channel", "reserve", "--sku", "TEA-500", "--store", HOLDING, "--pickup-store", PICKUP, "--qty",
                 str(qty), "--member", "M1", "--key", key, "--json", "--broker", chain.broker.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout)
    assert (answer["state"], answer["store_id"], answer["pickup_store"]) == ("confirmed", HOLDING, PICKUP), answer
    return answer


def ship(chain: Chain, rid: str, tags: list[str]) -> str:
    """The clerk at the holding store packs the tagged units and ships them; returns the transfer id."""
    epc_file = chain.tmp / f"{rid}.epcs"
    epc_file.write_text("\n".join(tags) + "\n")
    done = tenpo("edge", "reservation", "ship", rid, "--epc-file", str(epc_file), "--clerk", CLERK, "--json",
                 "--config", str(chain.configs[HOLDING]), stdin=f"{PIN}\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    shipped = json.loads(done.stdout)
    assert (shipped["state"], shipped["transfer"]["to_store"], shipped["transfer"]["qty"]) == ("in_transit", PICKUP,
                                                                                              len(tags))  # fmt: skip
    return str(shipped["transfer_id"])


def listed(chain: Chain, store_id: str, *flags: str) -> dict[str, dict[str, object]]:
    done = tenpo("edge", "reservations", *flags, "--json", "--config", str(chain.configs[store_id]))
    assert done.returncode == 0, done.stderr
    return {str(row["reservation_id"]): row for row in json.loads(done.stdout)}


def on_its_way_to_the_pickup_store(chain: Chain, rid: str, transfer_id: str) -> None:
    """HQ shows it in transit; the pickup store has it as coming, and the transfer's ASN."""
    wait_until(lambda: chain.hq_state(rid) == "in_transit", 30, what="in transit at HQ")
    wait_until(lambda: chain.store_state(PICKUP, rid) == "in_transit", 30, what="the pickup store hears of it")
    wait_until(lambda: chain.db(PICKUP).conn.execute("SELECT 1 FROM asns WHERE shipment_id = ?", (transfer_id,)).fetchone(),
               30, what="the transfer's ASN at the pickup store")  # fmt: skip


def test_reserved_at_one_store_shipped_received_at_the_dock_and_sold_at_the_other(chain: Chain) -> None:
    chain.receive(HOLDING, "TEA-500", 3)
    tags = [encode_sgtin96(TEA, serial) for serial in (11, 12)]
    rid = str(reserve_for_pickup_elsewhere(chain, 2, "web-transit-1")["reservation_id"])
    # Confirmed at the holding store: held there until it leaves.
    assert edge_stock(chain, HOLDING, "TEA-500") == {"on_hand": 3, "reserved": 2, "available": 1}
    assert listed(chain, HOLDING, "--active")[rid]["transit"] == f"to send to {PICKUP}"
    text = tenpo("edge", "reservations", "--config", str(chain.configs[HOLDING]))
    assert f"pickup {PICKUP}" in text.stdout and f"to send to {PICKUP}" in text.stdout

    transfer_id = ship(chain, rid, tags)
    # The units left with the transfer and are held nowhere on the way.
    assert edge_stock(chain, HOLDING, "TEA-500") == {"on_hand": 1, "reserved": 0, "available": 1}
    assert rid not in listed(chain, HOLDING, "--active"), "its part is done at the sending store"
    on_its_way_to_the_pickup_store(chain, rid, transfer_id)
    with chain.client() as web:
        moving = web.reservation(rid)
        assert (moving.state, moving.transfer_id, moving.shipped_from, moving.pickup_store) == (
            "in_transit", transfer_id, HOLDING, PICKUP)  # fmt: skip
    coming = listed(chain, PICKUP, "--active")[rid]
    assert (coming["state"], coming["transit"], coming["transfer_id"]) == ("in_transit", f"coming from {HOLDING}",
                                                                           transfer_id)  # fmt: skip
    assert edge_stock(chain, PICKUP, "TEA-500") == {"on_hand": 0, "reserved": 0, "available": 0}

    # The pickup store's dock reads both tags; accepting posts them and holds them for the customer at once.
    record = inspection.record_inspection(chain.db(PICKUP), PICKUP, arrived(tags, time.time()))
    assert record.shipment_id == transfer_id
    inspection.accept(chain.db(PICKUP), PICKUP, record.inspection_id, by=CLERK)
    assert chain.store_state(PICKUP, rid) == "ready"
    assert edge_stock(chain, PICKUP, "TEA-500") == {"on_hand": 2, "reserved": 2, "available": 0}
    wait_until(lambda: chain.hq_state(rid) == "ready", 30, what="ready at the pickup store, at HQ")
    with chain.client() as web:
        here = web.reservation(rid)
        assert (here.store_id, here.qty, here.reason, here.pickup_store) == (PICKUP, 2, None, None)
        assert here.expires_at is not None and here.expires_at > time.time() + 71 * 3600, "the pickup window starts now"
        wait_until(lambda: (r := edge_reservations.get(chain.db(PICKUP).conn, rid)) and r.expires_at == here.expires_at,
                   30, what="the pickup deadline at the pickup store")  # fmt: skip
        s001 = web.stock("TEA-500", PICKUP).stores[0]
        assert (s001.on_hand, s001.reserved, s001.available) == (2, 2, 0)

    pickup = tenpo("edge", "reservation", "pickup", rid, "--pay", "web:300", "--clerk", CLERK, "--json",
                   "--config", str(chain.configs[PICKUP]), stdin=f"{PIN}\n")  # fmt: skip
    assert pickup.returncode == 0, pickup.stderr
    wait_until(lambda: chain.hq_state(rid) == "picked_up", 30, what="picked up at HQ")
    assert edge_stock(chain, PICKUP, "TEA-500") == {"on_hand": 0, "reserved": 0, "available": 0}
    wait_until(lambda: chain.hq_on_hand(PICKUP, "TEA-500") == 0 and chain.hq_on_hand(HOLDING, "TEA-500") == 1, 30,
               what="both stores' stock at HQ")  # fmt: skip
    assert chain.central.scalar("SELECT status FROM transfers WHERE transfer_id = ?", (transfer_id,)) == "received"
    assert conflicts.list_open(chain.central) == []
    assert chain.central.scalar("SELECT count(*) FROM dead_letters") == 0


def test_a_short_arrival_holds_what_came_and_is_flagged_at_hq(chain: Chain) -> None:
    chain.receive(HOLDING, "TEA-500", 2)
    tags = [encode_sgtin96(TEA, serial) for serial in (21, 22)]
    rid = str(reserve_for_pickup_elsewhere(chain, 2, "web-transit-short")["reservation_id"])
    transfer_id = ship(chain, rid, tags)
    on_its_way_to_the_pickup_store(chain, rid, transfer_id)

    record = inspection.record_inspection(chain.db(PICKUP), PICKUP, arrived(tags[:1], time.time()))  # one lost
    inspection.accept(chain.db(PICKUP), PICKUP, record.inspection_id, by=CLERK)
    held = edge_reservations.get(chain.db(PICKUP).conn, rid)
    assert held is not None and (held.state, held.qty) == ("ready", 1)
    assert held.reason == f"short_arrival: 1 of 2 arrived at {PICKUP}"
    assert edge_stock(chain, PICKUP, "TEA-500") == {"on_hand": 1, "reserved": 1, "available": 0}
    shown = tenpo("edge", "reservations", "--active", "--config", str(chain.configs[PICKUP]))
    assert "short_arrival: 1 of 2" in shown.stdout, "the clerk sees it"

    def opened() -> dict[str, conflicts.Conflict]:
        return {c.kind: c for c in conflicts.list_open(chain.central)}

    found = wait_until(lambda: len(opened()) == 2 and opened(), 30, what="the conflicts at HQ")
    short = found["reservation-short"]
    assert (short.subject, short.store_id, short.detail["ordered"], short.detail["arrived"]) == (rid, PICKUP, 2, 1)
    assert short.detail["transfer_id"] == transfer_id and short.detail["from_store"] == HOLDING
    assert found[conflicts.TRANSFER].detail["missing_units"] == 1
    with chain.client() as web:
        flagged = web.reservation(rid)
        assert (flagged.state, flagged.qty, flagged.store_id) == ("ready", 1, PICKUP)
        assert flagged.reason == f"short_arrival: 1 of 2 arrived at {PICKUP}"
    conflicts.resolve(chain.central, short.id, "accept", note="customer takes the one")
    assert [c.kind for c in conflicts.list_open(chain.central)] == [conflicts.TRANSFER]


def test_cancelled_on_the_way_the_units_stay_at_the_pickup_store_as_its_stock(chain: Chain) -> None:
    chain.receive(HOLDING, "TEA-500", 1)
    tags = [encode_sgtin96(TEA, 31)]
    rid = str(reserve_for_pickup_elsewhere(chain, 1, "web-transit-cancel")["reservation_id"])
    transfer_id = ship(chain, rid, tags)
    on_its_way_to_the_pickup_store(chain, rid, transfer_id)
    with chain.client() as web:
        assert web.cancel(rid).state == "cancelled"
    wait_until(lambda: chain.store_state(PICKUP, rid) == "cancelled", 30, what="the pickup store hears of it")
    assert chain.store_state(HOLDING, rid) == "cancelled"

    record = inspection.record_inspection(chain.db(PICKUP), PICKUP, arrived(tags, time.time()))
    inspection.accept(chain.db(PICKUP), PICKUP, record.inspection_id, by=CLERK)
    assert chain.store_state(PICKUP, rid) == "cancelled"
    assert edge_stock(chain, PICKUP, "TEA-500") == {"on_hand": 1, "reserved": 0, "available": 1}
    wait_until(lambda: chain.central.scalar("SELECT status FROM transfers WHERE transfer_id = ?", (transfer_id,))
               == "received", 30, what="the transfer received at HQ")  # fmt: skip
    assert chain.hq_state(rid) == "cancelled"
    assert conflicts.list_open(chain.central) == []
