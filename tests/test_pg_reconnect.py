"""PostgreSQL goes away under HQ (a failover, a restart, ``pg_terminate_backend``, a cut network) and HQ carries on.

The aggregator reconnects with back-off and handles again what it was handling; nothing of a transaction that
did not commit was acknowledged to the store, so every event is applied exactly once. The monitor's reads and
the channel API's connection reopen the same way.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from bench.store_load import StoreLoad, check_applied_once, make_stores
from tenpo.cloud.aggregator import Aggregator
from tenpo.cloud.db import Central
from tenpo.cloud.hq.config import MonitorConfig
from tenpo.cloud.hq.data import HqData
from tenpo.cloud.reconnect import DatabaseLost
from tenpo.sandbox import Mosquitto, aggregator_process, wait_until
from tenpo.shared import crypto
from tenpo.shared.mqtt import parse_broker_url
from tenpo.shared.protocol import PROTOCOL_VERSION, Ack, Envelope, EventBatch, decode, down_topic, encode, up_topic

TERMINATE_OTHERS = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()")  # fmt: skip


def _gone(db: Central, pid: int) -> bool:
    return db.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ?", (pid,)) == 0


def test_the_aggregator_reconnects_when_its_backends_are_terminated_mid_stream(
    tmp_path: Path, broker: Mosquitto, postgres_url: str
) -> None:
    db = Central(postgres_url)
    stores = make_stores(db, 6, 400)
    load = StoreLoad(broker.port, stores, batch_size=25, inflight=2, ack_timeout_s=2.0)
    log_path = tmp_path / "agg.log"
    aggregator = aggregator_process(postgres_url, broker.url, log_path, "agg-pg").start()
    try:
        wait_until(lambda: "agg-pg" in load.figures.hq_seen, 30, what="the aggregator online")
        load.start()
        total = load.total_events()
        terminated = 0
        for share in (4, 2):  # twice: the second cut lands on connections the first reconnect opened
            wait_until(lambda share=share: load.acked_events() >= total // share, 120, interval=0.02,
                       what=f"1/{share} of the backlog acknowledged")  # fmt: skip
            terminated += int(db.scalar(TERMINATE_OTHERS))
            assert load.acked_events() < total, "the cut came while events were still flowing"
        assert terminated >= 2, "the aggregator's connections (apply and channel API) were cut"
        wait_until(load.done, 180, interval=0.1, what="every store's backlog acknowledged after the cuts")
        assert aggregator.alive(), "the aggregator survived losing its database connection"
        problems = check_applied_once(db, stores)
        assert problems == [], "\n".join(problems[:10])
        assert db.scalar("SELECT count(*) FROM events") == total
        assert db.scalar("SELECT count(*) FROM dead_letters") == 0, "a lost connection is no message's fault"
        text = log_path.read_text()
        assert "aggregator: PostgreSQL connection lost" in text
        assert "aggregator: reconnected to PostgreSQL" in text
    finally:
        load.stop()
        aggregator.kill()
        db.close()


class _Published:
    """Stands in for the aggregator's outgoing MQTT client: what it would have sent to the stores."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 0, properties: object = None) -> None:
        self.sent.append((topic, payload))


def test_a_failed_commit_is_not_acked_and_the_batch_applies_once_after_reconnecting(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = Central(postgres_url)
    [store] = make_stores(db, 1, 30)
    aggregator = Aggregator(postgres_url, parse_broker_url("mqtt://127.0.0.1:1"), client_id="agg-unit")
    published = _Published()
    aggregator.out = published  # type: ignore[assignment]
    body = encode(EventBatch(store.stream, store.events, backlog=0))
    envelope = Envelope(PROTOCOL_VERSION, store.store_id, "events", body.decode(), crypto.sign(store.key, body))
    message = mqtt.MQTTMessage(mid=1, topic=up_topic(store.store_id, "events").encode())
    message.payload = encode(envelope)
    message.qos = 1
    commit_work = aggregator.db._commit_work
    cuts = 0

    def cut_before_commit() -> None:  # the last thing before COMMIT: the server terminates this backend
        nonlocal cuts
        commit_work()
        if cuts == 0:
            cuts += 1
            pid = aggregator.db.conn.info.backend_pid
            db.execute("SELECT pg_terminate_backend(?)", (pid,))
            wait_until(lambda: _gone(db, pid), 10, what="the backend gone")

    aggregator.db._commit_work = cut_before_commit  # type: ignore[method-assign]
    try:
        with pytest.raises(DatabaseLost):
            aggregator._handle(message)
        assert published.sent == [], "no ack for a batch whose COMMIT failed"
        assert db.scalar("SELECT count(*) FROM events") == 0
        assert db.scalar("SELECT count(*) FROM dead_letters") == 0
        with caplog.at_level(logging.WARNING, logger="tenpo.cloud.reconnect"):
            aggregator._handle_until_done(message, threading.Event())
        assert "reconnected to PostgreSQL" in caplog.text
        acks = [decode(payload, Ack) for topic, payload in published.sent if topic == down_topic(store.store_id, "ack")]
        assert [(ack.hwm, ack.error) for ack in acks] == [(30, None)]
        aggregator._handle_until_done(message, threading.Event())  # the store resends it: applied already
        assert db.scalar("SELECT count(*) FROM events") == 30
        assert db.scalar("SELECT events_applied FROM stores WHERE store_id = ?", (store.store_id,)) == 30
        assert check_applied_once(db, [store]) == []
    finally:
        aggregator.db.close()
        aggregator.channel.desk.db.close()
        db.close()


def test_the_monitor_reads_again_after_postgresql_dropped_its_connection(postgres_url: str) -> None:
    db = Central(postgres_url)
    stores = make_stores(db, 3, 1)
    data = HqData(postgres_url, MonitorConfig())
    try:
        before = data.overview()
        assert sorted(r["store_id"] for r in before.records) == [s.store_id for s in stores]
        pid = data.db.conn.info.backend_pid
        db.execute("SELECT pg_terminate_backend(?)", (pid,))
        wait_until(lambda: _gone(db, pid), 10, what="the monitor's backend gone")
        after = data.overview()
        assert sorted(r["store_id"] for r in after.records) == [s.store_id for s in stores]
        assert data.db.conn.info.backend_pid != pid
    finally:
        data.close()
        db.close()
