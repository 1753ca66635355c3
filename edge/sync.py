"""The store's end of the sync link: outbox upstream, change feed and snapshots downstream, presence.

paho's network thread only hands messages to the asyncio loop; every database touch happens on
the loop, so the agent has one SQLite connection and no locks of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import paho.mqtt.client as mqtt
import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tenpo import __version__
from tenpo.edge import feed
from tenpo.edge.config import StoreConfig
from tenpo.edge.db import schema_version, transaction
from tenpo.edge.outbox import acknowledge, backlog, get_meta, next_counter, pending, read_counter, set_meta, stream_id
from tenpo.shared import crypto, hlc
from tenpo.shared.mqtt import connect_async, make_client
from tenpo.shared.protocol import (
    BROADCAST_CHANGES,
    HQ_STATE,
    PROTOCOL_VERSION,
    Ack,
    Birth,
    ChangePage,
    Death,
    Envelope,
    EventBatch,
    HqState,
    ProtocolError,
    Pull,
    SnapshotChunk,
    SnapshotRequest,
    Status,
    decode,
    down_topic,
    encode,
    up_topic,
)

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 512 * 1024  # stays well under HQ's 1 MiB upstream limit
PULL_RETRY_S = 2.0
SNAPSHOT_RETRY_S = 5.0
STALE_GAPS_ALERT = 3  # gap acks below our acknowledged mark in a row before we call HQ behind


@dataclass(slots=True)
class LinkCounters:
    batches_sent: int = 0
    events_sent: int = 0
    acks: int = 0
    resends: int = 0
    pages_applied: int = 0
    changes_applied: int = 0
    bad_messages: int = 0
    snapshot_rows: int = 0


@dataclass(slots=True)
class LinkState:
    connected: bool = False
    sent_upto: int = 0  # highest seq published on this connection
    acked: int = 0
    last_progress: float = field(default_factory=time.monotonic)
    last_pull: float = 0.0
    last_snapshot_request: float = 0.0
    last_status: float = 0.0
    connection_no: int = 0


ProgressCallback = Callable[[int, int], None]


class SyncLink:
    def __init__(
        self,
        config: StoreConfig,
        db: sqlite_utils.Database,
        key: Ed25519PrivateKey,
        on_snapshot_progress: ProgressCallback | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.key = key
        self.store_id = config.store_id
        self.counters = LinkCounters()
        self.state = LinkState()
        self.on_snapshot_progress = on_snapshot_progress
        self.caught_up = asyncio.Event()  # set once the replica is bootstrapped and the feed is current
        self._inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._stale_gaps = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        with transaction(db) as conn:
            self.stream = stream_id(conn)
            # Birth/death session number: grows across restarts and reconnects so a late Will is recognisably stale.
            self._bdseq_base = next_counter(conn, "bdseq_base") * 1_000_000
        self.state.acked = read_counter(db.conn, "acked")
        self.state.sent_upto = self.state.acked
        self.client = make_client(f"tenpo-store-{self.store_id}", config.tls, config.broker)

    # ------------------------------------------------------------------ envelopes

    def _envelope(self, kind: str, body: bytes) -> bytes:
        text = body.decode()
        return encode(Envelope(PROTOCOL_VERSION, self.store_id, kind, text, crypto.sign(self.key, body)))

    def _publish(self, kind: Any, body: Any, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(up_topic(self.store_id, kind), self._envelope(kind, encode(body)), qos=1, retain=retain)

    @property
    def bdseq(self) -> int:
        return self._bdseq_base + self.state.connection_no

    def _set_will(self) -> None:
        will = self._envelope("death", encode(Death(self.bdseq)))
        self.client.will_set(up_topic(self.store_id, "death"), will, qos=1, retain=True)

    # ------------------------------------------------------------------ paho thread → loop

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        client.subscribe(
            [(down_topic(self.store_id, kind), 1) for kind in ("ack", "changes", "snapshot")] + [(BROADCAST_CHANGES, 1), (HQ_STATE, 1)]
        )
        self._post("connected", None)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        # The next connection gets a new session number; its Will must carry it before paho reconnects.
        self.state.connection_no += 1
        self._set_will()
        self._post("disconnected", str(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._post(message.topic, message.payload)

    def _post(self, topic: str, payload: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, (topic, payload))

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._set_will()
        self._record_link(False)
        connect_async(self.client, self.config.broker)
        # Each tick looks for events other processes (clerk terminal, CLI) committed: one indexed query.
        tick = self.config.sync.poll_interval_s
        try:
            while not stop.is_set():
                try:
                    topic, payload = await asyncio.wait_for(self._inbox.get(), timeout=tick)
                except asyncio.TimeoutError:
                    pass
                else:
                    self._handle(topic, payload)
                    while not self._inbox.empty():  # drain what arrived meanwhile before housekeeping
                        self._handle(*self._inbox.get_nowait())
                self._housekeeping()
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        # Intentional disconnect: say so first (Sparkplug's rule), so HQ need not wait for the Will.
        if self.state.connected:
            info = self._publish("death", Death(self.bdseq), retain=True)
            try:
                await asyncio.wait_for(asyncio.to_thread(info.wait_for_publish, 2.0), 3.0)
            except (asyncio.TimeoutError, RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self._record_link(False)

    def _record_link(self, connected: bool) -> None:
        with transaction(self.db) as conn:
            set_meta(conn, "link", json.dumps({"connected": connected, "pid": os.getpid(), "at": time.time()}))

    # ------------------------------------------------------------------ dispatch

    def _handle(self, topic: str, payload: Any) -> None:
        try:
            if topic == "connected":
                self._connected()
            elif topic == "disconnected":
                self.state.connected = False
                self._record_link(False)
                log.info("broker connection lost (%s); outbox keeps filling", payload)
            elif topic == down_topic(self.store_id, "ack"):
                self._ack(decode(payload, Ack))
            elif topic in (down_topic(self.store_id, "changes"), BROADCAST_CHANGES):
                self._page(decode(payload, ChangePage))
            elif topic == down_topic(self.store_id, "snapshot"):
                self._snapshot(decode(payload, SnapshotChunk))
            elif topic == HQ_STATE:
                self._hq_state(decode(payload, HqState))
        except ProtocolError as exc:
            self._dead_letter(topic, str(exc), payload)
        except Exception as exc:  # whatever HQ sent, the store keeps selling: record it and carry on
            log.exception("could not handle a message on %s", topic)
            self._dead_letter(topic, f"{type(exc).__name__}: {exc}", payload)

    def _dead_letter(self, topic: str, reason: str, payload: Any) -> None:
        self.counters.bad_messages += 1
        log.warning("bad message on %s: %s", topic, reason)
        with transaction(self.db) as conn:
            conn.execute(
                "INSERT INTO dead_letters(source, reason, payload, created_at) VALUES (?, ?, ?, ?)",
                (topic, reason, payload[:65536] if isinstance(payload, bytes) else None, time.time()),
            )

    def _connected(self) -> None:
        self.state.connected = True
        self.state.sent_upto = self.state.acked  # whatever was in flight may be lost: resend, HQ dedups
        self.state.last_progress = time.monotonic()
        self._record_link(True)
        count, _ = backlog(self.db.conn)
        conn = self.db.conn
        self._publish(
            "birth",
            Birth(
                bdseq=self.bdseq, agent_version=__version__, schema_version=schema_version(self.db), backlog=count,
                last_seq=read_counter(conn, "outbox"), last_acked_seq=self.state.acked,
                cursor=read_counter(conn, "cursor"), hlc=self._hlc(),
            ),
            retain=True,
        )  # fmt: skip
        log.info("connected to %s as store %s (backlog %d)", self.config.broker, self.store_id, count)
        if feed.bootstrapped(self.db):
            self._pull(force=True)
        else:
            self._request_snapshot(force=True)

    def _hq_state(self, state: HqState) -> None:
        """An aggregator (re)started: what we sent or asked meanwhile may have gone nowhere."""
        if not state.online or not self.state.connected:
            return
        self.state.sent_upto = self.state.acked
        if feed.bootstrapped(self.db):
            self._pull(force=True)
        else:
            self._request_snapshot(force=True)

    def _hlc(self) -> int:
        return hlc.tick(read_counter(self.db.conn, "hlc"), int(time.time() * 1000))

    # ------------------------------------------------------------------ upstream

    def _housekeeping(self) -> None:
        if not self.state.connected:
            return
        now = time.monotonic()
        if self.state.sent_upto > self.state.acked and now - self.state.last_progress > self.config.sync.ack_timeout_s:
            log.info("no ack for %.1fs: resending from seq %d", now - self.state.last_progress, self.state.acked + 1)
            self.counters.resends += 1
            self.state.sent_upto = self.state.acked
            self.state.last_progress = now
        self._pump()
        if feed.bootstrapped(self.db):
            if now - self.state.last_pull > self.config.sync.pull_interval_s:
                self._pull(force=True)
        elif now - self.state.last_snapshot_request > SNAPSHOT_RETRY_S:
            self._request_snapshot(force=True)
        if now - self.state.last_status > self.config.sync.status_interval_s:
            self.state.last_status = now
            count, oldest = backlog(self.db.conn)
            conn = self.db.conn
            self._publish(
                "status",
                Status(
                    backlog=count, oldest_pending_age_s=round(time.time() - oldest, 3) if oldest else 0.0,
                    last_seq=read_counter(conn, "outbox"), last_acked_seq=self.state.acked,
                    cursor=read_counter(conn, "cursor"), hlc=self._hlc(),
                ),
            )  # fmt: skip

    def _pump(self) -> None:
        """Publish batches until the in-flight window is full or the outbox is drained."""
        settings = self.config.sync
        window = settings.batch_size * settings.max_inflight_batches
        while self.state.connected and self.state.sent_upto - self.state.acked < window:
            events = pending(self.db.conn, self.state.sent_upto, settings.batch_size)
            if not events:
                return
            body = encode(EventBatch(self.stream, events, backlog=read_counter(self.db.conn, "outbox") - events[-1].seq))
            while len(body) > MAX_BATCH_BYTES and len(events) > 1:
                events = events[: len(events) // 2]
                body = encode(EventBatch(self.stream, events))
            self.client.publish(up_topic(self.store_id, "events"), self._envelope("events", body), qos=1)
            if self.state.sent_upto == self.state.acked:
                self.state.last_progress = time.monotonic()
            self.state.sent_upto = events[-1].seq
            self.counters.batches_sent += 1
            self.counters.events_sent += len(events)

    def _ack(self, ack: Ack) -> None:
        if ack.stream != self.stream:
            return
        self.counters.acks += 1
        if ack.error:
            log.warning("HQ: %s", ack.error)
        if ack.hwm > self.state.acked:
            with transaction(self.db) as conn:
                self.state.acked = acknowledge(conn, ack.hwm)
                set_meta(conn, "last_sync_at", str(time.time()))  # the clerk's "last sync"
                if self._stale_gaps >= STALE_GAPS_ALERT:
                    set_meta(conn, "alert.hq_behind", None)
            self._stale_gaps = 0
            self.state.last_progress = time.monotonic()
        if ack.gap and ack.hwm < self.state.acked:
            # Either a late ack from another aggregator (harmless: ignore it), or HQ really lost events it had
            # acknowledged (its database restored from a backup): they are gone here, so say so if it persists.
            self._stale_gaps += 1
            if self._stale_gaps >= STALE_GAPS_ALERT:
                self._hq_behind(ack.hwm)
            return
        if ack.gap:
            self.state.sent_upto = self.state.acked
            self.counters.resends += 1
        self.state.sent_upto = max(self.state.sent_upto, self.state.acked)
        self._pump()

    def _hq_behind(self, hwm: int) -> None:
        with transaction(self.db) as conn:
            if get_meta(conn, "alert.hq_behind") is None:
                log.error("HQ has applied only up to event %d but had acknowledged up to %d: events %d..%d are no "
                          "longer here to resend (was HQ's database restored?); an operator has to decide",
                          hwm, self.state.acked, hwm + 1, self.state.acked)  # fmt: skip
            set_meta(conn, "alert.hq_behind", json.dumps({"hq_hwm": hwm, "acked": self.state.acked, "at": time.time()}))

    # ------------------------------------------------------------------ downstream

    def _pull(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.state.connected or (not force and now - self.state.last_pull < PULL_RETRY_S):
            return
        self.state.last_pull = now
        self._publish("pull", Pull(cursor=read_counter(self.db.conn, "cursor")))

    def _page(self, page: ChangePage) -> None:
        if not feed.bootstrapped(self.db):
            return  # the snapshot will cover it, and the feed resumes from the snapshot's start
        result = feed.apply_page(self.db, self.store_id, page)
        if result.gap:
            self._pull()
            return
        self.counters.pages_applied += 1
        self.counters.changes_applied += result.applied
        if result.applied:
            with transaction(self.db) as conn:
                set_meta(conn, "last_sync_at", str(time.time()))
        if result.behind:
            self._pull(force=True)
        else:
            self.caught_up.set()

    def _request_snapshot(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.state.connected or (not force and now - self.state.last_snapshot_request < 1.0):
            return
        self.state.last_snapshot_request = now
        progress = feed.snapshot_progress(self.db)
        done = int(feed.get_meta(self.db.conn, "snapshot_done") or 0)
        self._publish(
            "snapshot",
            SnapshotRequest(snapshot_id=progress.snapshot_id, entity=progress.entity, after_key=progress.after_key, done=done,
                            stream=self.stream),
        )

    def _snapshot(self, chunk: SnapshotChunk) -> None:
        if feed.bootstrapped(self.db):
            return
        progress = feed.apply_snapshot_chunk(self.db, self.store_id, chunk)
        self.counters.snapshot_rows += len(chunk.rows)
        if self.on_snapshot_progress:
            self.on_snapshot_progress(chunk.progress, chunk.total)
        if progress.done:
            log.info("bootstrap finished: %d rows; change feed resumes after %d", chunk.progress, chunk.as_of)
            self._pull(force=True)
        else:
            self._request_snapshot(force=True)
