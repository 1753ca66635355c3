"""Reservations through the channel API with real agents, a real aggregator and Mosquitto: the store confirms
when available covers it, the clerk hands it over at checkout, two channels racing for the last unit get
exactly one confirmation, an offline store confirms after reconnecting (or HQ times out), no-shows expire."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tenpo.channel import ChannelError
from tenpo.cloud.channel import reservations as hq_reservations
from tenpo.cloud.db import Central
from tenpo.edge.reservations import store as edge_reservations
from tenpo.sandbox import wait_until
from tenpo.shared.errors import UserError
from tests.test_channel_support import CLERK, PIN, Chain, chain, tenpo  # noqa: F401  (fixture)


def edge_stock(where: Chain, store_id: str, sku: str) -> dict[str, int]:
    done = tenpo("edge", "stock", "--sku", sku, "--json", "--config", str(where.configs[store_id]))
    assert done.returncode == 0, done.stderr
    here = [row for row in json.loads(done.stdout) if row["store_id"] == store_id]
    return {key: here[0][key] for key in ("on_hand", "reserved", "available")}


def test_reserve_confirmed_by_the_store_then_picked_up_through_checkout(chain: Chain) -> None:  # noqa: F811 (imported fixture)
    chain.receive("S001", "UMBRELLA", 3)
    done = tenpo("channel", "reserve", "--sku", "UMBRELLA", "--store", "S001", "--qty", "2", "--member", "M1",
                 "--key", "order-1001", "--json", "--broker", chain.broker.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    rid = answer["reservation_id"]
    assert answer["state"] == "confirmed", answer  # the store's agent confirmed within the wait

    # Available = on hand - reserved, at the store box and at HQ.
    assert edge_stock(chain, "S001", "UMBRELLA") == {"on_hand": 3, "reserved": 2, "available": 1}
    with chain.client() as web:
        s001 = [s for s in web.stock("UMBRELLA").stores if s.store_id == "S001"][0]
        assert (s001.on_hand, s001.reserved, s001.available) == (3, 2, 1)
        # The same key is the same reservation, however often the shop retries.
        again = web.reserve("UMBRELLA", "S001", 2, key="order-1001", member="M1")
        assert again.reservation_id == rid and again.state == "confirmed"
        with pytest.raises(ChannelError) as refused:
            web.reserve("UMBRELLA", "S001", 1, key="order-1001")
        assert refused.value.code == "conflict"

    config = str(chain.configs["S001"])
    listed = tenpo("edge", "reservations", "--json", "--config", config)
    assert [(r["reservation_id"], r["state"], r["qty"]) for r in json.loads(listed.stdout)] == [(rid, "confirmed", 2)]
    ready = tenpo("edge", "reservation", "ready", rid, "--clerk", CLERK, "--config", config, stdin=f"{PIN}\n")
    assert ready.returncode == 0, ready.stderr
    wait_until(lambda: chain.hq_state(rid) == "ready", 20, what="ready at HQ")

    pickup = tenpo("edge", "reservation", "pickup", rid, "--pay", "web:3960", "--clerk", CLERK, "--json",
                   "--config", config, stdin=f"{PIN}\n")  # fmt: skip
    assert pickup.returncode == 0, pickup.stderr
    receipt = json.loads(pickup.stdout)["receipt_no"]
    wait_until(lambda: chain.hq_state(rid) == "picked_up", 20, what="picked up at HQ")
    assert chain.central.scalar("SELECT receipt_no FROM reservations WHERE reservation_id = ?", (rid,)) == receipt
    # The sale consumed the reservation: 1 left on the shelf, nothing reserved, at the box and at HQ.
    assert edge_stock(chain, "S001", "UMBRELLA") == {"on_hand": 1, "reserved": 0, "available": 1}
    wait_until(lambda: chain.hq_on_hand("S001", "UMBRELLA") == 1, 20, what="the sale at HQ")
    with chain.client() as web:
        assert web.reservation(rid).state == "picked_up"
        s001 = web.stock("UMBRELLA", "S001").stores[0]
        assert (s001.on_hand, s001.reserved, s001.available) == (1, 0, 1)
    # A second pickup of the same reservation is refused and sells nothing.
    twice = tenpo("edge", "reservation", "pickup", rid, "--pay", "web:3960", "--clerk", CLERK, "--config", config,
                  stdin=f"{PIN}\n")  # fmt: skip
    assert twice.returncode == 1 and "picked_up" in twice.stderr
    assert edge_stock(chain, "S001", "UMBRELLA")["on_hand"] == 1


def test_two_channels_racing_for_the_last_unit_exactly_one_is_confirmed(chain: Chain) -> None:  # noqa: F811 (imported fixture)
    chain.receive("S002", "TSHIRT-M", 1)
    answers: dict[str, object] = {}
    start = threading.Barrier(2)

    def ask(channel: str) -> None:
        with chain.client(channel) as client:
            start.wait()
            answers[channel] = client.reserve("TSHIRT-M", "S002", 1, key=f"{channel}-last-unit")

    threads = [threading.Thread(target=ask, args=(channel,)) for channel in ("web", "app")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    states = sorted(a.state for a in answers.values())  # type: ignore[attr-defined]
    assert states == ["confirmed", "rejected"], answers
    loser = [a for a in answers.values() if a.state == "rejected"][0]  # type: ignore[attr-defined]
    assert "not_available" in (loser.reason or "")
    # The store holds exactly one, never two.
    db = chain.db("S002")
    assert edge_reservations.reserved(db.conn, "TSHIRT-M") == 1
    assert edge_reservations.available(db.conn, "TSHIRT-M") == 0


def test_a_store_offline_when_the_request_arrives_confirms_after_reconnecting(chain: Chain) -> None:  # noqa: F811 (imported fixture)
    chain.receive("S001", "TSHIRT-M", 2)
    chain.stop_store("S001")
    with chain.client() as web:
        held = web.reserve("TSHIRT-M", "S001", 1, key="offline-1", wait_s=1.0)
        assert held.state == "requested"  # HQ took it; the store has not answered yet
        assert web.reservation(held.reservation_id).state == "requested"
        chain.start_store("S001")
        wait_until(lambda: web.reservation(held.reservation_id).state == "confirmed", 30, what="confirmed after reconnect")
    assert chain.store_state("S001", held.reservation_id) == "confirmed"


def test_hq_times_out_a_store_that_does_not_answer_and_the_late_store_releases_it(chain: Chain) -> None:  # noqa: F811 (imported fixture)
    chain.receive("S002", "UMBRELLA", 1)
    chain.stop_store("S002")
    with chain.client() as web:
        held = web.reserve("UMBRELLA", "S002", 1, key="timeout-1", wait_s=0, confirm_s=1)
        assert held.state == "requested"
        expired = wait_until(lambda: (r := web.reservation(held.reservation_id)).state == "expired" and r, 20,
                             what="HQ's timeout")  # fmt: skip
        assert expired.reason == "store_did_not_answer"
        # Expired at HQ: the unit is available to the next customer at once.
        assert web.stock("UMBRELLA", "S002").stores[0].available == 1
    chain.start_store("S002")
    wait_until(lambda: chain.store_state("S002", held.reservation_id) == "expired", 30, what="the store hears of it")
    assert edge_reservations.available(chain.db("S002").conn, "UMBRELLA") == 1
    assert chain.hq_state(held.reservation_id) == "expired", "a late confirmation does not revive it"


def test_no_shows_expire_by_the_scheduled_job_and_a_cancel_frees_the_units(chain: Chain) -> None:  # noqa: F811 (imported fixture)
    chain.receive("S001", "UMBRELLA", 2)
    with chain.client() as web:
        first = web.reserve("UMBRELLA", "S001", 1, key="no-show", hold_h=1)
        second = web.reserve("UMBRELLA", "S001", 1, key="cancel-me")
        assert (first.state, second.state) == ("confirmed", "confirmed")
        assert first.expires_at is not None and first.expires_at > time.time() + 3500
        # Two hours later the job runs (the aggregator runs the same function every few seconds).
        central = Central(chain.db_url)
        assert hq_reservations.sweep(central, time.time() + 7200) == 1
        central.close()
        assert web.reservation(first.reservation_id).state == "expired"
        cancelled = web.cancel(second.reservation_id)
        assert cancelled.state == "cancelled"
        assert web.cancel(second.reservation_id).state == "cancelled", "a retried cancel gives the same answer"
    for rid, state in ((first.reservation_id, "expired"), (second.reservation_id, "cancelled")):
        wait_until(lambda r=rid, s=state: chain.store_state("S001", r) == s, 20, what=f"{rid} {state} at the store")
    assert edge_stock(chain, "S001", "UMBRELLA") == {"on_hand": 2, "reserved": 0, "available": 2}


def test_a_clerks_hold_at_another_store_is_held_there_and_its_state_comes_back(chain: Chain) -> None:  # noqa: F811 (imported fixture)
    from tenpo.edge.clerk import records

    chain.receive("S002", "UMBRELLA", 1)
    rid = records.request_reservation(chain.db("S001"), "S001", CLERK, sku="UMBRELLA", qty=1, from_store="S002",
                                      customer="佐藤 090-1111-2222")  # fmt: skip
    wait_until(lambda: chain.store_state("S002", rid) == "confirmed", 30, what="held at S002")
    wait_until(lambda: chain.db("S001").conn.execute("SELECT status FROM pickup_reservations WHERE reservation_id = ?",
                                                     (rid,)).fetchone()[0] == "confirmed", 30,
               what="the clerk at S001 sees it confirmed")  # fmt: skip
    assert chain.hq_state(rid) == "confirmed"

    # A 取り置き of S002's own stock is held at S002 at once, within what is available there.
    with pytest.raises(UserError, match="only 0 of UMBRELLA available here"):
        records.request_reservation(chain.db("S002"), "S002", CLERK, sku="UMBRELLA", qty=1, from_store="S002",
                                    customer="田中")  # fmt: skip
    chain.receive("S002", "UMBRELLA", 1)
    own = records.request_reservation(chain.db("S002"), "S002", CLERK, sku="UMBRELLA", qty=1, from_store="S002",
                                      customer="田中 080-2222-3333")  # fmt: skip
    assert chain.store_state("S002", own) == "confirmed"
    held = edge_reservations.get(chain.db("S002").conn, own)
    assert held is not None and held.customer == "田中 080-2222-3333"
    raw = chain.db("S002").conn.execute("SELECT customer FROM reservations WHERE reservation_id = ?", (own,)).fetchone()
    assert "田中".encode() not in bytes(raw[0]), "the customer is sealed at rest"
    wait_until(lambda: chain.hq_state(own) == "confirmed", 30, what="HQ records the store's own hold")
    assert edge_reservations.available(chain.db("S002").conn, "UMBRELLA") == 0
