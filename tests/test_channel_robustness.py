"""Hostile or broken channel requests, as real bytes through Mosquitto to a real aggregator: each gets an error
code (or, without a usable response topic, no answer) and a counter; the aggregator keeps answering. And
HQ's side on both central databases: idempotency keys, the race for the last unit, the state machine."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tenpo.cloud.admin import add_store, import_products
from tenpo.cloud.channel import reservations
from tenpo.cloud.channel.service import ChannelDesk
from tenpo.cloud.db import Central
from tenpo.sandbox import Mosquitto, aggregator_process, wait_until
from tenpo.shared import crypto
from tenpo.shared.channel_api import decode_response, encode_message, response_topic
from tests.test_channel_support import PRODUCTS

REPLY = response_topic("web", "robust")

BAD: list[tuple[str, bytes, str]] = [
    ("stock", b"not json", "bad_request"),
    ("stock", b"\xff\xfe\x00", "bad_request"),
    ("stock", b"[]", "bad_request"),
    ("stock", b'{"sku": 5}', "bad_request"),
    ("stock", b'{"sku": "../../etc"}', "bad_request"),
    ("stock", b'{"sku": "A", "store": "S001/../x"}', "bad_request"),
    ("stock", b"[" * 5000 + b"]" * 5000, "bad_request"),
    ("stock", b'{"sku": "' + b"A" * 20_000 + b'"}', "bad_request"),
    ("reserve", b'{"sku": "UMBRELLA", "store": "S001", "qty": 1}', "bad_request"),  # no idempotency key
    ("reserve", b'{"key": "k1", "sku": "UMBRELLA", "store": "S001", "qty": 0}', "bad_request"),
    ("reserve", b'{"key": "k2", "sku": "UMBRELLA", "store": "S001", "qty": 99999999999999999999}', "bad_request"),
    ("reserve", b'{"key": "k3", "sku": "UMBRELLA", "store": "S001", "qty": 1, "wait_s": 1e308}', "bad_request"),
    ("drop_tables", b"{}", "bad_request"),
    ("stock", b'{"sku": "NO-SUCH"}', "not_found"),
    ("reserve", b'{"key": "k4", "sku": "UMBRELLA", "store": "S999", "qty": 1}', "not_found"),
    ("reservation", b'{"reservation_id": "R99999999"}', "not_found"),
]


def request(client: mqtt.Client, op: str, payload: bytes, correlation: bytes, reply: str | None = REPLY) -> None:
    props = Properties(PacketTypes.PUBLISH)
    if reply is not None:
        props.ResponseTopic = reply
    props.CorrelationData = correlation
    client.publish(f"tenpo/v1/channel/web/req/{op}", payload, qos=1, properties=props).wait_for_publish(5)


def test_malformed_requests_get_an_error_code_and_a_counter_and_never_stop_the_aggregator(
    tmp_path: Path, broker: Mosquitto, sqlite_url: str
) -> None:  # fmt: skip
    central = Central(sqlite_url)
    products = tmp_path / "products.csv"
    products.write_text(PRODUCTS)
    import_products(central, products)
    add_store(central, "S001", crypto.public_key_pem(Ed25519PrivateKey.generate()))
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    answers: dict[bytes, dict[str, object]] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="robust", protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: answers.__setitem__(bytes(m.properties.CorrelationData),
                                                            json.loads(m.payload))  # fmt: skip
    subscribed = threading.Event()
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.subscribe(REPLY, qos=1)
    assert subscribed.wait(10)
    # The aggregator is up once it answers a valid request.
    wait_until(lambda: request(client, "stock", b'{"sku": "UMBRELLA"}', b"ping") or b"ping" in answers, 30,
               interval=0.5, what="the aggregator answering")  # fmt: skip

    for n, (op, payload, _code) in enumerate(BAD):
        request(client, op, payload, f"bad-{n}".encode())
    request(client, "stock", b'{"sku": "UMBRELLA"}', b"no-reply", reply=None)  # cannot be answered: counted
    request(client, "stock", b'{"sku": "UMBRELLA"}', b"elsewhere", reply="tenpo/v1/stores/S001/down/changes")
    request(client, "stock", b'{"sku": "UMBRELLA"}', b"after")
    wait_until(lambda: b"after" in answers, 30, what="an answer after the bad ones")
    for n, (op, _payload, code) in enumerate(BAD):
        got = answers.get(f"bad-{n}".encode())
        assert got is not None and got["ok"] is False, (op, got)
        assert got["error"]["code"] == code, (op, _payload[:40], got)  # type: ignore[index]
    assert answers[b"after"]["ok"] is True and aggregator.alive()
    assert b"no-reply" not in answers and b"elsewhere" not in answers
    client.loop_stop()
    client.disconnect()
    aggregator.terminate()
    stats = dict(central.all("SELECT outcome, n FROM channel_stats WHERE channel = 'web'"))
    assert stats["bad_request"] == sum(1 for _, _, code in BAD if code == "bad_request")
    assert stats["not_found"] == 3 and stats["forbidden"] == 2
    central.close()


# ---------------------------------------------------------------------------- HQ's side, both dialects


def _hq(url: str, tmp_path: Path) -> Central:
    central = Central(url)
    products = tmp_path / "products.csv"
    products.write_text(PRODUCTS)
    import_products(central, products)
    add_store(central, "S001", crypto.public_key_pem(Ed25519PrivateKey.generate()))
    with central.transaction():  # one unit on the shelf, as the store's events put it there
        central.execute("INSERT INTO stock_ledger(store_id, stream, sku, location, delta, reason, store_seq, created_at)"
                        " VALUES ('S001', 's', 'UMBRELLA', 'floor', 1, 'receipt', 1, ?)", (time.time(),))  # fmt: skip
    return central


def ask(desk: ChannelDesk, op: str, body: dict[str, object], correlation: bytes = b"c") -> dict[str, object]:
    out = desk.handle(f"tenpo/v1/channel/web/req/{op}", json.dumps(body).encode(), REPLY, correlation)
    assert len(out) == 1 and out[0].correlation == correlation and out[0].topic == REPLY
    return json.loads(out[0].payload)  # type: ignore[no-any-return]


def test_hq_serialises_the_last_unit_and_keeps_idempotency_keys(central_url: str, tmp_path: Path) -> None:
    setup = _hq(central_url, tmp_path)
    results: list[dict[str, object]] = []
    start = threading.Barrier(4)

    def reserve(n: int) -> None:
        desk = ChannelDesk(Central(central_url))
        start.wait()
        results.append(ask(desk, "reserve", {"key": f"race-{n}", "sku": "UMBRELLA", "store": "S001", "qty": 1,
                                             "wait_s": 0}))  # fmt: skip
        desk.db.close()

    threads = [threading.Thread(target=reserve, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    states = sorted(r["result"]["state"] for r in results)  # type: ignore[index]
    assert states == ["rejected", "rejected", "rejected", "requested"], results
    # The one sent to the store is in the feed for S001; the refused ones are not.
    assert setup.scalar("SELECT count(*) FROM changes WHERE kind = 'reservation.upsert' AND store_id = 'S001'") == 1

    desk = ChannelDesk(setup)
    first = ask(desk, "reserve", {"key": "race-0", "sku": "UMBRELLA", "store": "S001", "qty": 1, "wait_s": 0})
    again = ask(desk, "reserve", {"key": "race-0", "sku": "UMBRELLA", "store": "S001", "qty": 1, "wait_s": 0.0,
                                  "customer": None})  # fmt: skip
    assert first["result"] == again["result"], "the same key is the same reservation"  # type: ignore[index]
    reused = ask(desk, "reserve", {"key": "race-0", "sku": "UMBRELLA", "store": "S001", "qty": 2, "wait_s": 0})
    assert reused["error"]["code"] == "conflict"  # type: ignore[index]
    assert setup.scalar("SELECT count(*) FROM reservations") == 4
    setup.close()


def test_the_state_machine_keeps_hqs_word_over_a_late_store(central_url: str, tmp_path: Path) -> None:
    central = _hq(central_url, tmp_path)
    desk = ChannelDesk(central)
    made = ask(desk, "reserve", {"key": "k", "sku": "UMBRELLA", "store": "S001", "qty": 1, "wait_s": 0, "confirm_s": 1})
    rid = made["result"]["reservation_id"]  # type: ignore[index]
    assert reservations.sweep(central, time.time() + 5) == 1
    with central.transaction():
        assert reservations.move(central, rid, "confirmed", time.time(), by_store="S001") == []  # too late
        assert reservations.move(central, rid, "picked_up", time.time(), by_store="S002") == []  # not its hold
    answer = ask(desk, "reservation", {"reservation_id": rid})["result"]
    assert (answer["state"], answer["reason"]) == ("expired", "store_did_not_answer")  # type: ignore[index]
    other = desk.handle("tenpo/v1/channel/app/req/reservation", json.dumps({"reservation_id": rid}).encode(),
                        response_topic("app", "x"), b"c")  # fmt: skip
    assert decode_response(other[0].payload).error.code == "not_found", "another channel's reservation is not shown"  # type: ignore[union-attr]
    assert encode_message(decode_response(other[0].payload))
    central.close()


@pytest.mark.parametrize("topic", ["tenpo/v1/channel/WEB/req/stock", "tenpo/v1/channel/web/req", "x/y"])
def test_requests_on_topics_that_are_not_channel_requests_are_counted_not_answered(topic: str, tmp_path: Path,
                                                                                   sqlite_url: str) -> None:  # fmt: skip
    desk = ChannelDesk(Central(sqlite_url))
    assert desk.handle(topic, b"{}", REPLY, b"c") == []
    assert desk.stats[("?", "bad_topic")] == 1
    desk.db.close()
