"""A load generator that sends like many stores after an outage, from one process.

Each simulated store has its own Ed25519 key (registered at HQ), its own stream and a backlog of
``stock.adjusted`` events. It behaves as the store agent's sync does (edge/sync_state.py): batches of
``batch_size`` signed events, at most ``inflight`` batches unacknowledged, and when HQ says nothing for
``ack_timeout_s`` it resends from the acknowledged mark (HQ skips what it already has). One paho client
publishes for all of them; acks come back on each store's down/ack topic.

Used by tests/test_drain.py (a small chain) and bench/bench_apply.py (500 stores × 2,000 events).
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tenpo.cloud.admin import add_store
from tenpo.cloud.db import Central
from tenpo.edge.sync_state import ACK_TIMEOUT_CAP_S
from tenpo.shared import crypto
from tenpo.shared.mqtt import make_client
from tenpo.shared.protocol import (
    HQ_STATE,
    PROTOCOL_VERSION,
    ROOT,
    Ack,
    Envelope,
    Event,
    EventBatch,
    HqState,
    decode,
    encode,
    up_topic,
)

SKUS = [f"SKU-{i:03d}" for i in range(50)]


@dataclass(slots=True)
class SimulatedStore:
    store_id: str
    key: Ed25519PrivateKey
    stream: str
    events: list[Event]
    acked: int = 0
    sent_upto: int = 0
    last_heard: float = 0.0
    resends: int = 0
    silent_timeouts: int = 0  # ack timeouts in a row without progress (the store agent's back-off, below)
    ack_wait: float = 0.0

    def expected_on_hand(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for event in self.events:
            totals[event.payload["sku"]] += event.payload["delta"]
        return totals


def make_stores(db: Central, count: int, events_each: int, seed: int = 1) -> list[SimulatedStore]:
    """``count`` stores registered at HQ, each with a backlog of ``events_each`` events."""
    rng = random.Random(seed)
    stores = []
    for n in range(1, count + 1):
        key = Ed25519PrivateKey.generate()
        store_id = f"L{n:04d}"
        add_store(db, store_id, crypto.public_key_pem(key), f"Load store {n}")
        events = [
            Event(seq, uuid.uuid4().hex, "stock.adjusted", 1, (int(time.time() * 1000) << 16) + seq,
                  {"sku": rng.choice(SKUS), "location": "floor", "delta": rng.choice((-1, 1, 2)), "reason": "count"})
            for seq in range(1, events_each + 1)
        ]  # fmt: skip
        stores.append(SimulatedStore(store_id, key, uuid.uuid4().hex, events))
    return stores


@dataclass(slots=True)
class LoadFigures:
    started: float = 0.0
    drained: float | None = None
    batches_sent: int = 0
    resends: int = 0
    hq_seen: set[str] = field(default_factory=set)  # aggregator client ids that announced themselves


class StoreLoad:
    """Publishes every store's backlog and follows the acks until all is acknowledged."""

    def __init__(self, port: int, stores: list[SimulatedStore], batch_size: int = 500, inflight: int = 4,
                 ack_timeout_s: float = 5.0) -> None:  # fmt: skip
        self.stores = {store.store_id: store for store in stores}
        self.batch_size = batch_size
        self.inflight = inflight
        self.ack_timeout_s = ack_timeout_s
        self.figures = LoadFigures()
        self._rng = random.Random(7)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.client = make_client(f"tenpo-load-{os.getpid()}-{os.urandom(3).hex()}")
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_message
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not connected.wait(10):
            raise RuntimeError("the load generator could not connect to the broker")
        self.client.subscribe([(f"{ROOT}/stores/+/down/ack", 1), (HQ_STATE, 1)])

    # ------------------------------------------------------------------ acks and HQ presence

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == HQ_STATE:
            state = decode(bytes(message.payload), HqState)
            if state.online:
                self.figures.hq_seen.add(state.aggregator)
            return
        store_id = message.topic.split("/")[-3]
        store = self.stores.get(store_id)
        if store is None:
            return
        ack = decode(bytes(message.payload), Ack)
        with self._lock:
            if ack.stream != store.stream:
                return
            if ack.hwm > store.acked:
                store.acked = ack.hwm
                store.last_heard = time.monotonic()
                store.silent_timeouts, store.ack_wait = 0, self.ack_timeout_s
            if ack.gap:  # HQ saw a later seq than it could apply: resend from its mark now
                store.sent_upto = store.acked
        self._wake.set()

    # ------------------------------------------------------------------ sending

    def start(self) -> StoreLoad:
        self.figures.started = time.monotonic()
        now = time.monotonic()
        for store in self.stores.values():
            store.last_heard = now
            store.ack_wait = self.ack_timeout_s
        self._thread = threading.Thread(target=self._run, name="store-load", daemon=True)
        self._thread.start()
        return self

    def acked_events(self) -> int:
        return sum(store.acked for store in self.stores.values())

    def total_events(self) -> int:
        return sum(len(store.events) for store in self.stores.values())

    def done(self) -> bool:
        return self.figures.drained is not None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            pending = False
            for store in self.stores.values():
                pending |= self._step(store)
            if not pending:
                self.figures.drained = time.monotonic()
                return
            self._wake.wait(0.2)

    def _step(self, store: SimulatedStore) -> bool:
        """Send what the window allows; resend from the mark after silence. False once all is acknowledged."""
        with self._lock:
            total = len(store.events)
            if store.acked >= total:
                return False
            if store.sent_upto > store.acked and time.monotonic() - store.last_heard > store.ack_wait:
                store.sent_upto = store.acked  # whatever was in flight may be lost: resend, HQ skips duplicates
                store.last_heard = time.monotonic()
                # As the store agent does (edge/sync_state.py): double the wait per silent timeout, jittered.
                store.silent_timeouts += 1
                ceiling = min(max(ACK_TIMEOUT_CAP_S, self.ack_timeout_s), self.ack_timeout_s * 2.0 ** store.silent_timeouts)
                store.ack_wait = max(self.ack_timeout_s, self._rng.uniform(0.75 * ceiling, ceiling))
                store.resends += 1
                self.figures.resends += 1
            batches = []
            while store.sent_upto < total and store.sent_upto - store.acked < self.batch_size * self.inflight:
                events = store.events[store.sent_upto : store.sent_upto + self.batch_size]
                batches.append(events)
                store.sent_upto += len(events)
        for events in batches:
            backlog = total - events[-1].seq
            body = encode(EventBatch(store.stream, events, backlog=backlog))
            envelope = Envelope(PROTOCOL_VERSION, store.store_id, "events", body.decode(), crypto.sign(store.key, body))
            self.client.publish(up_topic(store.store_id, "events"), encode(envelope), qos=1)
            self.figures.batches_sent += 1
        return True

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self.client.disconnect()
        self.client.loop_stop()


def check_applied_once(db: Central, stores: list[SimulatedStore]) -> list[str]:
    """What HQ holds against what was sent: every event once, on-hand the sum of the deltas. [] when right."""
    problems = []
    applied = {row[0]: (int(row[1]), int(row[2])) for row in db.all(
        "SELECT store_id, last_applied_seq, events_applied FROM stores WHERE store_id LIKE ?", ("L%",))}  # fmt: skip
    counted = dict(db.all("SELECT store_id, count(*) FROM events WHERE store_id LIKE ? GROUP BY store_id", ("L%",)))
    levels: dict[str, Counter[str]] = {}
    for store_id, sku, on_hand in db.all("SELECT store_id, sku, on_hand FROM stock_levels WHERE store_id LIKE ?", ("L%",)):
        levels.setdefault(store_id, Counter())[sku] = int(on_hand)
    for store in stores:
        sent = len(store.events)
        if applied.get(store.store_id) != (sent, sent):
            problems.append(f"{store.store_id}: last seq and events applied {applied.get(store.store_id)}, sent {sent}")
        if int(counted.get(store.store_id, 0)) != sent:
            problems.append(f"{store.store_id}: {counted.get(store.store_id, 0)} event rows, sent {sent}")
        expected = _nonzero(store.expected_on_hand())  # a level of 0 and no level read the same
        if _nonzero(levels.get(store.store_id, Counter())) != expected:
            problems.append(f"{store.store_id}: on-hand differs from the sum of the deltas sent")
    return problems


def _nonzero(counts: Counter[str]) -> dict[str, int]:
    return {sku: total for sku, total in counts.items() if total}


def rss_peak_kb(pid: int) -> int:
    """The process's peak resident set (VmHWM), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0
