"""HQ keeps serving whatever a client sends: each bad message or event is one dead letter, never an outage."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tenpo.cloud.admin import add_store
from tenpo.cloud.aggregator import Aggregator
from tenpo.cloud.apply import KeyRing, apply_batch
from tenpo.cloud.db import Central
from tenpo.sandbox import Mosquitto, wait_until
from tenpo.shared import crypto
from tenpo.shared.mqtt import parse_broker_url
from tenpo.shared.protocol import Envelope, Event, EventBatch, encode, up_topic


@pytest.fixture
def store_key(tmp_path: Path) -> crypto.Ed25519PrivateKey:
    crypto.generate_keypair(tmp_path / "S001.key", tmp_path / "S001.pub")
    return crypto.load_private_key(tmp_path / "S001.key")


def signed(key: crypto.Ed25519PrivateKey, batch: EventBatch) -> bytes:
    body = encode(batch)
    return encode(Envelope(1, "S001", "events", body.decode(), crypto.sign(key, body)))


def stock_event(seq: int, delta: int = 1) -> Event:
    return Event(seq, uuid.uuid4().hex, "stock.adjusted", 1, seq << 16,
                 {"sku": "A1", "delta": delta, "reason": "count", "location": "floor"})  # fmt: skip


def on_hand(db: Central) -> int:
    return int(db.scalar("SELECT coalesce(sum(delta), 0) FROM stock_ledger WHERE store_id = 'S001'", (), 0))


# ---------------------------------------------------------------------------- the aggregator keeps serving


class RunningAggregator:
    """An aggregator in a thread and a client that publishes as a store and collects its acks."""

    def __init__(self, db_url: str, broker: Mosquitto) -> None:
        self.aggregator = Aggregator(db_url, parse_broker_url(broker.url))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.aggregator.run, args=(self.stop,), daemon=True)
        self.thread.start()
        assert self.aggregator.connected.wait(10)
        self.acks: list[dict] = []
        self.got_ack = threading.Event()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: (self.acks.append(json.loads(m.payload)), self.got_ack.set())
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe("tenpo/v1/stores/S001/down/ack", qos=1)
        assert subscribed.wait(10)

    def publish(self, payload: bytes) -> None:
        self.client.publish(up_topic("S001", "events"), payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def running(sqlite_url: str, broker: Mosquitto, store_key: crypto.Ed25519PrivateKey) -> Iterator[tuple[Central, RunningAggregator]]:
    db = Central(sqlite_url)
    add_store(db, "S001", crypto.public_key_pem(store_key))
    hq = RunningAggregator(sqlite_url, broker)
    yield db, hq
    hq.close()
    db.close()


def test_a_deeply_nested_unsigned_message_is_a_dead_letter_not_an_outage(running, store_key) -> None:
    db, hq = running
    hostile = b'{"v":1,"store":"S001","kind":"events","body":"{}","sig":"","extra":' + b"[" * 1000 + b"]" * 1000 + b"}"
    assert len(hostile) < 2100
    hq.publish(hostile)
    reason = wait_until(lambda: db.scalar("SELECT reason FROM dead_letters"), 15, what="the dead letter")
    assert "nested deeper than" in reason
    hq.publish(signed(store_key, EventBatch("s", [stock_event(1, delta=3)])))
    assert hq.got_ack.wait(10), "the aggregator still serves after the hostile message"
    assert hq.acks[-1]["hwm"] == 1 and on_hand(db) == 3
    assert hq.thread.is_alive()


class FlakyKeys(KeyRing):
    """The key lookup fails once the way a database under strain does."""

    def __init__(self, db: Central) -> None:
        super().__init__(db)
        self.failed = False

    def get(self, store_id: str):  # noqa: ANN201
        if not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("disk I/O error")
        return super().get(store_id)


def test_any_failure_opening_a_message_is_its_dead_letter_and_the_next_applies(running, store_key) -> None:
    db, hq = running
    hq.aggregator.keys = FlakyKeys(hq.aggregator.db)
    hq.publish(signed(store_key, EventBatch("s", [stock_event(1)])))
    reason = wait_until(lambda: db.scalar("SELECT reason FROM dead_letters"), 15, what="the dead letter")
    assert reason == "unreadable: OperationalError: disk I/O error"
    assert db.scalar("SELECT dead_letters FROM stores WHERE store_id = 'S001'") == 1
    hq.publish(signed(store_key, EventBatch("s", [stock_event(1), stock_event(2)])))  # the store resends
    assert hq.got_ack.wait(10)
    assert hq.acks[-1]["hwm"] == 2 and on_hand(db) == 2
