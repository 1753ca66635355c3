"""The store's end of the sync link: outbox upstream, change feed and snapshots downstream, presence.

A thin adapter around the pure :class:`~tenpo.edge.sync_state.LinkMachine`: paho's network thread only
turns callbacks into inputs for the asyncio loop; on the loop, messages are decoded, fed to the
machine, and its commands carried out. Every database touch happens on the loop, so the agent has one
SQLite connection and no locks of its own.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tenpo import __version__
from tenpo.edge import bootstrap_bulk, bootstrap_worker, clock_skew, feed
from tenpo.edge import db as edge_db
from tenpo.edge.clock_skew import CLOCK_SKEW_META
from tenpo.edge.config import StoreConfig
from tenpo.edge.db import schema_version, transaction
from tenpo.edge.keystore import codec as pii_codec
from tenpo.edge.outbox import acknowledge, backlog, get_meta, next_counter, pending, read_counter, set_meta, stream_id
from tenpo.edge.sync_state import (
    MAX_BATCH_BYTES,
    Acknowledge,
    AckReceived,
    AlertHqBehind,
    ApplyChunk,
    ApplyPage,
    CaughtUp,
    ChunkApplied,
    ChunkReceived,
    Command,
    Connected,
    Disconnected,
    EventsSent,
    HqAnnounced,
    Input,
    LinkCounters,
    LinkMachine,
    PageApplied,
    PageReceived,
    Reconnects,
    RecordClockSkew,
    RecordLink,
    RequestSnapshot,
    Resend,
    SendBirth,
    SendDeath,
    SendEvents,
    SendPull,
    SendStatus,
    Stopping,
    Tick,
    batch_body,
)
from tenpo.shared import crypto, hlc
from tenpo.shared.mqtt import connect_async, make_client
from tenpo.shared.pki_crl import certificate_expiry
from tenpo.shared.protocol import (
    BROADCAST_CHANGES,
    HQ_STATE,
    PROTOCOL_VERSION,
    Ack,
    Birth,
    ChangePage,
    Death,
    Envelope,
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

__all__ = ["LinkCounters", "ProgressCallback", "SyncLink"]


def _release_freed_memory() -> None:
    """Issue 19 §5: after a bootstrap the C allocator keeps the chunks' freed memory; hand it back to the
    system (glibc's malloc_trim) before the token build takes its share, so the peak is the bootstrap's."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim


log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Message:
    """A message from the broker, as paho's thread hands it to the loop."""

    topic: str
    payload: bytes
    received_at: float  # wall clock as paho handed it over, before the loop's queue adds its delay
    ticket: bootstrap_worker.Ticket | None = None  # a snapshot chunk handed to the bootstrap worker (issue 19 §5)


class SyncLink:
    def __init__(
        self,
        config: StoreConfig,
        db: sqlite_utils.Database,
        key: Ed25519PrivateKey,
        on_snapshot_progress: ProgressCallback | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.key = key
        self.store_id = config.store_id
        self.on_snapshot_progress = on_snapshot_progress
        self.caught_up = asyncio.Event()  # set once the replica is bootstrapped and the feed is current
        self._inbox: asyncio.Queue[Input | Message] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._death: mqtt.MQTTMessageInfo | None = None
        self._prefetched: SnapshotRequest | None = None  # the next snapshot chunk, asked for ahead (issue 19)
        self._token_builder: threading.Thread | None = None  # a bootstrap's name tokens, moved after it (issue 19)
        self._sealer = bootstrap_worker.Pipeline(feed.WORKER_READER)  # a large bootstrap's chunks decoded and sealed in a fork
        with transaction(db) as conn:
            self.stream = stream_id(conn)
            # Birth/death session number: grows across restarts and reconnects so a late Will is recognisably stale.
            first_session = next_counter(conn, "bdseq_base") * 1_000_000
        rng = rng or random.Random()
        self.reconnects = Reconnects(first_session, rng)
        self.machine = LinkMachine(config.sync, self.stream, acked=read_counter(db.conn, "acked"),
                                   bootstrapped=feed.bootstrapped(db), now=time.monotonic(), rng=rng)  # fmt: skip
        self.counters: LinkCounters = self.machine.counters
        self.client = make_client(f"tenpo-store-{self.store_id}", config.tls, config.broker)
        self._snapshot_topic = down_topic(self.store_id, "snapshot")
        self._routes: dict[str, Callable[[float, Message], Input]] = {
            down_topic(self.store_id, "ack"): self._ack,
            down_topic(self.store_id, "changes"): lambda now, m: PageReceived(now, decode(m.payload, ChangePage)),
            BROADCAST_CHANGES: lambda now, m: PageReceived(now, decode(m.payload, ChangePage)),
            self._snapshot_topic: self._chunk,
            HQ_STATE: lambda now, m: HqAnnounced(now, decode(m.payload, HqState)),
        }

    # ------------------------------------------------------------------ envelopes

    def _envelope(self, kind: str, body: bytes) -> bytes:
        text = body.decode()
        return encode(Envelope(PROTOCOL_VERSION, self.store_id, kind, text, crypto.sign(self.key, body)))

    def _publish(self, kind: Any, body: Any, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(
            up_topic(self.store_id, kind), self._envelope(kind, encode(body)), qos=1, retain=retain
        )

    def _set_will(self) -> None:
        will = self._envelope("death", encode(Death(self.reconnects.session)))
        self.client.will_set(up_topic(self.store_id, "death"), will, qos=1, retain=True)

    # ------------------------------------------------------------------ paho thread → loop

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        client.subscribe(
            [(down_topic(self.store_id, kind), 1) for kind in ("ack", "changes", "snapshot")]
            + [(BROADCAST_CHANGES, 1), (HQ_STATE, 1)]
        )
        now = time.monotonic()
        self._post(Connected(now, self.reconnects.connected(now)))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        # Runs before paho waits and reconnects: the next connection's session number goes into its Will now.
        now = time.monotonic()
        self._wait_before_reconnect(client, self.reconnects.lost(now))
        self._set_will()
        self._post(Disconnected(now, str(reason)))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._wait_before_reconnect(client, self.reconnects.failed(time.monotonic()))

    @staticmethod
    def _wait_before_reconnect(client: mqtt.Client, seconds: float) -> None:
        # min = max: paho waits exactly our jittered time (its own doubling would start over at each CONNACK).
        # paho sleeps fractional seconds although its hints say int.
        client.reconnect_delay_set(min_delay=seconds, max_delay=seconds)  # type: ignore[arg-type]

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        payload = bytes(message.payload)
        # issue 19 §5: a snapshot chunk goes to the bootstrap worker, if one runs, as soon as it arrives
        ticket = self._sealer.submit(payload) if message.topic == self._snapshot_topic else None
        self._post(Message(message.topic, payload, time.time(), ticket))

    def _post(self, item: Input | Message) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, item)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self._set_will()
        self._record_link(False)
        self._build_search_tokens()  # a build a stop interrupted starts over
        connect_async(self.client, self.config.broker)
        # Each tick looks for events other processes (clerk terminal, CLI) committed: one indexed query.
        tick = self.config.sync.poll_interval_s
        try:
            while not stop.is_set():
                try:
                    item = await asyncio.wait_for(self._inbox.get(), timeout=tick)
                except TimeoutError:
                    pass
                else:
                    self._handle(item)
                    while not self._inbox.empty():  # drain what arrived meanwhile before housekeeping
                        self._handle(self._inbox.get_nowait())
                # Not caught like a message: a database that fails here fails the agent, as any write would.
                self._run(self.machine.handle(Tick(time.monotonic(), read_counter(self.db.conn, "outbox"))))
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self._sealer.stop()
        self._run(self.machine.handle(Stopping(time.monotonic())))
        if self._death is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(self._death.wait_for_publish, 2.0), 3.0)
            except (TimeoutError, RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self._record_link(False)

    def _record_link(self, connected: bool) -> None:
        with transaction(self.db) as conn:
            set_meta(conn, "link", json.dumps({"connected": connected, "pid": os.getpid(), "at": time.time()}))

    # ------------------------------------------------------------------ loop: inputs

    def _handle(self, item: Input | Message) -> None:
        source = item.topic if isinstance(item, Message) else type(item).__name__
        payload = item.payload if isinstance(item, Message) else None
        try:
            if isinstance(item, Message):
                route = self._routes.get(item.topic)
                if route is None:
                    return
                item = route(time.monotonic(), item)
            elif isinstance(item, Disconnected):
                log.info("broker connection lost (%s); outbox keeps filling", item.reason)
            self._run(self.machine.handle(item))
        except ProtocolError as exc:
            self._dead_letter(source, str(exc), payload)
        except Exception as exc:  # whatever HQ sent, the store keeps selling: record it and carry on
            log.exception("could not handle %s", source)
            self._dead_letter(source, f"{type(exc).__name__}: {exc}", payload)

    def _ack(self, now: float, message: Message) -> AckReceived:
        ack: Ack = decode(message.payload, Ack)
        if ack.error and ack.stream == self.stream:
            log.warning("HQ: %s", ack.error)
        return AckReceived(now, ack, written=read_counter(self.db.conn, "outbox"), received_at=message.received_at)

    def _dead_letter(self, source: str, reason: str, payload: Any) -> None:
        self.counters.bad_messages += 1
        log.warning("bad message on %s: %s", source, reason)
        with transaction(self.db) as conn:
            conn.execute(
                "INSERT INTO dead_letters(source, reason, payload, created_at) VALUES (?, ?, ?, ?)",
                (source, reason, payload[:65536] if isinstance(payload, bytes) else None, time.time()),
            )

    # ------------------------------------------------------------------ loop: commands

    def _run(self, commands: list[Command]) -> None:
        """Carry out commands in order; a command that reports back (a batch sent, a page applied) queues what follows."""
        queue = deque(commands)
        while queue:
            queue.extend(self._execute(queue.popleft()))

    def _execute(self, command: Command) -> list[Command]:
        match command:
            case SendEvents(after=after, limit=limit):
                return self.machine.handle(self._send_events(after, limit))
            case Acknowledge(hwm=hwm, clear_alert=clear_alert):
                with transaction(self.db) as conn:
                    acknowledge(conn, hwm)
                    set_meta(conn, "last_sync_at", str(time.time()))  # the clerk's "last sync"
                    if clear_alert:
                        set_meta(conn, "alert.hq_behind", None)
            case ApplyPage(page=page):
                return self.machine.handle(self._apply_page(page))
            case ApplyChunk(chunk=chunk):
                return self.machine.handle(self._apply_chunk(chunk))
            case SendPull():
                self._publish("pull", Pull(cursor=read_counter(self.db.conn, "cursor")))
            case RequestSnapshot():
                self._request_snapshot()
            case SendStatus(acked=acked):
                self._send_status(acked)
            case SendBirth(bdseq=bdseq, acked=acked):
                self._send_birth(bdseq, acked)
            case SendDeath(bdseq=bdseq):
                self._death = self._publish("death", Death(bdseq), retain=True)
            case RecordLink(connected=connected):
                self._record_link(connected)
            case RecordClockSkew(skew_s=skew_s, samples=samples):
                with transaction(self.db) as conn:
                    set_meta(conn, CLOCK_SKEW_META, clock_skew.to_meta(skew_s, samples, time.time()))
            case Resend(from_seq=from_seq, why=why):
                log.info("%s: resending from seq %d", why, from_seq)
            case AlertHqBehind(hq_hwm=hq_hwm, acked=acked):
                self._hq_behind(hq_hwm, acked)
            case CaughtUp():
                self.caught_up.set()
        return []

    def _hlc(self) -> int:
        return hlc.tick(read_counter(self.db.conn, "hlc"), int(time.time() * 1000))

    def _send_birth(self, bdseq: int, acked: int) -> None:
        conn = self.db.conn
        count, _ = backlog(conn)
        self._publish(
            "birth",
            Birth(
                bdseq=bdseq, agent_version=__version__, schema_version=schema_version(self.db), backlog=count,
                last_seq=read_counter(conn, "outbox"), last_acked_seq=acked, cursor=read_counter(conn, "cursor"),
                hlc=self._hlc(), cert_not_after=certificate_expiry(self.config.tls.cert),
            ),
            retain=True,
        )  # fmt: skip
        log.info("connected to %s as store %s (backlog %d)", self.config.broker, self.store_id, count)

    def _send_status(self, acked: int) -> None:
        conn = self.db.conn
        count, oldest = backlog(conn)
        self._publish(
            "status",
            Status(
                backlog=count, oldest_pending_age_s=round(time.time() - oldest, 3) if oldest else 0.0,
                last_seq=read_counter(conn, "outbox"), last_acked_seq=acked, cursor=read_counter(conn, "cursor"),
                hlc=self._hlc(),
            ),
        )  # fmt: skip

    def _send_events(self, after: int, limit: int) -> EventsSent:
        conn = self.db.conn
        events = pending(conn, after, limit)
        if not events:
            return EventsSent(time.monotonic(), after, 0)
        body, count = batch_body(self.stream, events, read_counter(conn, "outbox"), MAX_BATCH_BYTES)
        self.client.publish(up_topic(self.store_id, "events"), self._envelope("events", body), qos=1)
        return EventsSent(time.monotonic(), events[count - 1].seq, count)

    def _hq_behind(self, hq_hwm: int, acked: int) -> None:
        with transaction(self.db) as conn:
            if get_meta(conn, "alert.hq_behind") is None:
                log.error("HQ has applied only up to event %d but had acknowledged up to %d: events %d..%d are no "
                          "longer here to resend (was HQ's database restored?); an operator has to decide",
                          hq_hwm, acked, hq_hwm + 1, acked)  # fmt: skip
            set_meta(conn, "alert.hq_behind", json.dumps({"hq_hwm": hq_hwm, "acked": acked, "at": time.time()}))

    def _apply_page(self, page: ChangePage) -> PageApplied:
        result = feed.apply_page(self.db, self.store_id, page)
        if not result.gap:
            self.counters.pages_applied += 1
            self.counters.changes_applied += result.applied
            if result.applied:
                with transaction(self.db) as conn:
                    set_meta(conn, "last_sync_at", str(time.time()))
        return PageApplied(time.monotonic(), result.gap, result.behind)

    def _request_snapshot(self) -> None:
        progress = feed.snapshot_progress(self.db)
        done = int(get_meta(self.db.conn, "snapshot_done") or 0)
        request = SnapshotRequest(snapshot_id=progress.snapshot_id, entity=progress.entity, after_key=progress.after_key,
                                  done=done, stream=self.stream)  # fmt: skip
        if request == self._prefetched:  # asked already, before the chunk was applied
            self._prefetched = None
            return
        self._publish("snapshot", request)

    def _prefetch(self, chunk: SnapshotChunk) -> None:
        """Issue 19: ask for the chunk after ``chunk`` before applying it, so HQ reads and sends the next one
        while this one is written. Only for the chunk the replica expects (not a stale copy), one ahead."""
        request = self._next_request(chunk)
        if request is not None and request == self._prefetched:
            return  # asked already, as the chunk arrived (the bootstrap worker's chunks)
        self._prefetched = request
        if request is not None:
            self._publish("snapshot", request)

    def _next_request(self, chunk: SnapshotChunk) -> SnapshotRequest | None:
        if chunk.next_key is None and chunk.next_entity is None:
            return None
        conn = self.db.conn
        current = get_meta(conn, "snapshot_id")
        done = int(get_meta(conn, "snapshot_done") or 0) if current is not None else 0
        if (current is not None and current != chunk.snapshot_id) or chunk.progress - feed.chunk_rows(chunk) != done:
            return None
        entity = chunk.entity if chunk.next_key is not None else chunk.next_entity
        return SnapshotRequest(snapshot_id=chunk.snapshot_id, entity=entity, after_key=chunk.next_key,
                               done=chunk.progress, stream=self.stream)  # fmt: skip

    def _chunk(self, now: float, message: Message) -> ChunkReceived:
        ticket = message.ticket if message.ticket is not None else self._start_worker(message.payload)
        if ticket is not None:
            # Asked for the next chunk now, not when this one is applied: HQ sends it while the worker seals this one.
            counted = feed.counted_chunk(message.payload)
            self._prefetch(counted)
            prepared = self._sealer.take(ticket)
            if prepared is not None and prepared.rows == counted.prepared:
                return ChunkReceived(now, msgspec.structs.replace(counted, path=prepared.path))
            if prepared is not None:
                bootstrap_worker.discard(prepared)
        return ChunkReceived(now, feed.decode_snapshot_chunk(message.payload))

    def _start_worker(self, payload: bytes) -> bootstrap_worker.Ticket | None:
        """Issue 19 §5: a large bootstrap's first members chunk forks the bootstrap worker and goes to it, as do
        the chunks after it. Forked now the data key is loaded, but before this process decodes any members
        chunk: what it holds at the fork counts in the worker's RSS too."""
        if not self._sealer.idle:
            return None
        head = bootstrap_worker.chunk_head(payload)
        if head is None or head.entity != "members" or not bootstrap_worker.wanted(head.total):
            return None
        scratch = bootstrap_bulk.worker_dir(self.db.conn)
        if not scratch or feed.bootstrapped(self.db):
            return None
        return self._sealer.start(pii_codec(self.db.conn), self.store_id, scratch, payload)

    def _apply_chunk(self, chunk: SnapshotChunk) -> ChunkApplied:
        self._prefetch(chunk)
        progress = feed.apply_snapshot_chunk(self.db, self.store_id, chunk, defer_tokens=True)
        self.counters.snapshot_rows += 0 if progress.stale else feed.chunk_rows(chunk)
        if self.on_snapshot_progress:
            self.on_snapshot_progress(chunk.progress, chunk.total)
        if progress.done:
            self._sealer.stop()
            log.info("bootstrap finished: %d rows; change feed resumes after %d", chunk.progress, chunk.as_of)
            self._build_search_tokens()
        return ChunkApplied(time.monotonic(), progress.done, progress.stale)

    def _build_search_tokens(self) -> None:
        """Issue 19 §5: the members are usable when the bootstrap finishes; their name-search tokens are
        moved into place afterwards by a thread on its own connection (edge/bootstrap_bulk.py), while the
        agent serves. SQLite leaves the interpreter free while it sorts and copies."""
        if self._token_builder is not None and self._token_builder.is_alive():
            return
        if not bootstrap_bulk.pending(self.db.conn):
            return
        _release_freed_memory()
        self._token_builder = threading.Thread(target=self._token_build, name="search-tokens", daemon=True)
        self._token_builder.start()

    def _token_build(self) -> None:
        started = time.monotonic()
        try:
            db = edge_db.connect(self.config.database, create=False)
            db.conn.execute("PRAGMA synchronous = NORMAL")  # WAL: a power cut undoes slices, and a build starts over
            try:
                moved = bootstrap_bulk.build_tokens(db.conn)
            finally:
                db.conn.close()
        except Exception:  # the replica is as it was: the next start tries again
            log.exception("could not build the name-search tokens of the bootstrap")
            return
        log.info("name search ready: %d tokens of the bootstrap moved in %.1f s", moved, time.monotonic() - started)
