"""`tenpo cloud run`: the MQTT consumer that applies store events and serves the change feed.

Upstream work topics are shared subscriptions, so several aggregators against one PostgreSQL split
the load; presence topics are plain subscriptions, so every aggregator (and the HQ monitor) sees
each birth and Will. paho's thread only queues messages; one worker thread owns the database.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tenpo.cloud.apply import (
    KeyRing,
    Opened,
    Rejected,
    apply_batch,
    dead_letter,
    open_envelope,
)
from tenpo.cloud.apply_group import Waiting, apply_batches, groups
from tenpo.cloud.channel.service import Outgoing, no_delay
from tenpo.cloud.channel.worker import ChannelWorker  # issue 18: the channel API
from tenpo.cloud.db import Central
from tenpo.cloud.feed import changes_after, latest_change, snapshot_chunk
from tenpo.cloud.presence import record_birth, record_status
from tenpo.cloud.reconnect import Backoff, DatabaseLost, connection_lost, reopen
from tenpo.shared.channel_api import REQUEST_FILTER
from tenpo.shared.mqtt import BrokerUrl, TlsFiles, connect_async, make_client
from tenpo.shared.protocol import (
    BROADCAST_CHANGES,
    HQ_STATE,
    ROOT,
    SHARE_GROUP,
    Ack,
    HqState,
    down_topic,
    encode,
    parse_up_topic,
    shared,
)  # fmt: skip

log = logging.getLogger(__name__)

WORK_KINDS = ("events", "pull", "snapshot", "status")
PRESENCE_KINDS = ("birth", "death")
PUSH_INTERVAL_S = 0.25
RECEIVE_MAXIMUM = 16  # unacknowledged messages the broker may send ahead (MQTT 5 Receive Maximum)
CHANNEL_PREFIX = f"{ROOT}/channel/"
QUEUE_LIMIT = 16  # received messages (batches of up to 512 KiB) waiting here for the database worker
RETRIES_AFTER_RECONNECT = 3  # a message whose handling loses the connection this often is left to the store's resend


@dataclass(slots=True)
class AggregatorCounters:
    received: int = 0
    batches_applied: int = 0
    events_applied: int = 0
    dead_letters: int = 0
    pages_pushed: int = 0


class Aggregator:
    def __init__(
        self, db_url: str, broker: BrokerUrl, tls: TlsFiles | None = None, client_id: str | None = None,
        group: str = SHARE_GROUP,
    ) -> None:  # fmt: skip
        self.db = Central(db_url)
        self.keys = KeyRing(self.db)
        self.broker = broker
        self.group = group
        self.counters = AggregatorCounters()
        self._backoff = Backoff()
        self._queue: queue.Queue[mqtt.MQTTMessage | None] = queue.Queue(maxsize=QUEUE_LIMIT)
        self.connected = threading.Event()
        self.client_id = client_id or f"tenpo-aggregator-{os.getpid()}-{os.urandom(3).hex()}"
        self.client = make_client(self.client_id, tls, broker)
        self.client.will_set(HQ_STATE, encode(HqState(False, self.client_id, time.time())), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        # Acknowledge a message to the broker only once it is handled (committed), and hold at most
        # QUEUE_LIMIT here: while the queue is full paho's thread waits, stops reading the socket, and the
        # rest of a 500-store backlog waits at the broker instead of in this process's memory. A waiting
        # paho thread sends nothing either, so acks and feed pages leave through a second connection.
        self.client.manual_ack_set(True)
        self.client.on_message = self._on_message
        self._stopping = threading.Event()
        self.out = make_client(f"{self.client_id}-out", tls, broker)
        self._last_pushed = latest_change(self.db)
        # Channel API requests have their own thread and connection: a stock query never waits behind batches.
        self.channel = ChannelWorker(db_url, self._answer, self._ack, self._wake)
        self.out.on_connect = no_delay  # answers (and acks) leave at once, not after the previous one's TCP ACK

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, properties: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused the aggregator: %s", reason)
            return
        subscriptions = [(shared(f"{ROOT}/stores/+/up/{kind}", self.group), 1) for kind in WORK_KINDS]
        subscriptions += [(f"{ROOT}/stores/+/up/{kind}", 1) for kind in PRESENCE_KINDS]
        subscriptions.append((shared(REQUEST_FILTER, self.group), 1))  # channel API requests, load shared
        client.subscribe(subscriptions)
        # Stores that asked while no aggregator listened re-ask when they see this.
        client.publish(HQ_STATE, encode(HqState(True, self.client_id, time.time())), qos=1, retain=True)
        self.connected.set()
        log.info("aggregator connected to %s", self.broker)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.startswith(CHANNEL_PREFIX):
            self.channel.submit(message)
            return
        while not self._stopping.is_set():
            try:
                self._queue.put(message, timeout=0.5)
                return
            except queue.Full:
                continue

    def run(self, stop: threading.Event) -> None:
        connect_async(self.out, self.broker)
        self.channel.start()
        connect_async(self.client, self.broker, receive_maximum=RECEIVE_MAXIMUM)
        next_push = time.monotonic()
        try:
            while not stop.is_set():
                timeout = max(0.0, next_push - time.monotonic())
                try:
                    message = self._queue.get(timeout=timeout)
                except queue.Empty:
                    message = None
                if message is not None:
                    self._handle_waiting([message, *self._also_waiting()], stop)
                if self.channel.feed_grew:  # a reservation for a store: send it now, not at the next tick
                    next_push = time.monotonic()
                if time.monotonic() >= next_push:
                    try:
                        self._push_feed()
                    except DatabaseLost as lost:
                        reopen(self.db, stop, "aggregator", lost.__cause__, self._backoff)
                    next_push = time.monotonic() + PUSH_INTERVAL_S
        finally:
            self._stopping.set()
            self.channel.stop()
            self.client.disconnect()
            self.client.loop_stop()
            self.out.disconnect()
            self.out.loop_stop()
            self.db.close()

    # ------------------------------------------------------------------ work

    def _also_waiting(self) -> list[mqtt.MQTTMessage]:
        """The messages already queued behind the one taken (at most the queue's limit; wake-ups dropped: the loop
        looks at the feed after them anyway)."""
        more: list[mqtt.MQTTMessage] = []
        while len(more) < QUEUE_LIMIT:
            try:
                message = self._queue.get_nowait()
            except queue.Empty:
                break
            if message is not None:
                more.append(message)
        return more

    def _handle_waiting(self, messages: list[mqtt.MQTTMessage], stop: threading.Event) -> None:
        """Handle the messages in order; each run of event batches in one transaction (apply_group.py)."""
        run: list[mqtt.MQTTMessage] = []
        for message in messages:
            parsed = parse_up_topic(message.topic)
            if parsed is not None and parsed[1] == "events":
                run.append(message)
                continue
            self._apply_together(run, stop)
            run = []
            self._handle_until_done(message, stop)
            self.client.ack(message.mid, message.qos)
        self._apply_together(run, stop)

    def _apply_together(self, messages: list[mqtt.MQTTMessage], stop: threading.Event) -> None:
        """Group commit: the batches' Acks go out after their one COMMIT. If the group fails, each message is
        handled on its own as before (its dead letters, its retries after a lost connection)."""
        alone: list[tuple[mqtt.MQTTMessage, Opened | None]] = []
        waiting: list[tuple[mqtt.MQTTMessage, Opened]] = []
        for message in messages if len(messages) > 1 else []:
            try:
                opened = self._open(message)
            except DatabaseLost:  # handled alone: it reconnects and tries again
                alone.append((message, None))
                continue
            if opened is None:  # its dead letter is written
                self.client.ack(message.mid, message.qos)
            else:
                waiting.append((message, opened))
        if len(messages) == 1:
            alone.append((messages[0], None))
        for group in groups([Waiting(o.store_id, o.body, m.topic) for m, o in waiting]):
            part, waiting = waiting[: len(group)], waiting[len(group) :]
            try:
                acks = apply_batches(self.db, group, self.client_id)
            except Exception as exc:
                if connection_lost(self.db, exc) and not reopen(self.db, stop, "aggregator", exc, self._backoff):
                    return  # stopping: the stores resend what they have no ack for
                log.warning("%d batches could not be applied together (%s); applying each alone", len(part), exc)
                alone += part
                continue
            for (message, opened), ack in zip(part, acks, strict=True):
                self._sent_ack(opened.store_id, ack)
                self.client.ack(message.mid, message.qos)
        for message, maybe in alone:
            self._handle_until_done(message, stop, maybe)
            self.client.ack(message.mid, message.qos)

    def _handle_until_done(
        self, message: mqtt.MQTTMessage, stop: threading.Event, opened: Opened | None = None
    ) -> None:
        """Handle a message; if the database connection goes meanwhile, nothing of it was acknowledged to the
        store: reconnect (back-off while PostgreSQL is down) and handle it again (applying is idempotent)."""
        for _attempt in range(RETRIES_AFTER_RECONNECT):
            try:
                self._handle(message, opened)
                return
            except DatabaseLost as lost:
                if not reopen(self.db, stop, "aggregator", lost.__cause__, self._backoff):
                    return  # stopping: the store resends what it has no ack for
            except Exception:  # _handle dead-letters its own failures; this is the last line
                log.exception("message on %s not handled", message.topic)
                return
        log.warning("message on %s lost the database connection %d times; left for the store to resend",
                    message.topic, RETRIES_AFTER_RECONNECT)  # fmt: skip

    def _open(self, message: mqtt.MQTTMessage) -> Opened | None:
        """Check a message (apply.open_envelope); None when it is not applied: its dead letter is written."""
        self.counters.received += 1
        payload = bytes(message.payload)
        parsed = parse_up_topic(message.topic)
        topic_store = parsed[0] if parsed else None
        try:
            return open_envelope(message.topic, payload, self.keys)
        except Rejected as exc:
            self._dead_letter(message.topic, exc.reason, payload, exc.store_id)
        except Exception as exc:  # a hostile message found a way past the checks
            if connection_lost(self.db, exc):  # not the message: the key lookup lost the database
                raise DatabaseLost(str(exc)) from exc
            log.exception("could not open a message on %s", message.topic)
            self._dead_letter(message.topic, f"unreadable: {type(exc).__name__}: {exc}", payload, topic_store)
        return None

    def _sent_ack(self, store_id: str, ack: Ack) -> None:
        self.counters.batches_applied += 1
        # Stamped as it leaves, after the commit: the store measures its clock against HQ's with it.
        self.out.publish(down_topic(store_id, "ack"), encode(msgspec.structs.replace(ack, at=time.time())), qos=1)
        self.channel.poke()  # a store's answer to a reservation a channel waits for may be in it

    def _handle(self, message: mqtt.MQTTMessage, opened: Opened | None = None) -> None:
        """Apply one message. Whatever goes wrong with it is its dead letter; the consumer keeps serving."""
        if opened is None:
            opened = self._open(message)
            if opened is None:
                return
        payload = bytes(message.payload)
        store_id, kind, body = opened.store_id, opened.kind, opened.body
        try:
            if kind == "events":
                self._sent_ack(store_id, apply_batch(self.db, store_id, body, message.topic, self.client_id))
            elif kind == "pull":
                page = changes_after(self.db, body.cursor, body.limit, store_id)
                self.out.publish(down_topic(store_id, "changes"), encode(page), qos=1)
            elif kind == "snapshot":
                chunk = snapshot_chunk(self.db, store_id, body)
                self.out.publish(down_topic(store_id, "snapshot"), encode(chunk), qos=1)
            elif kind == "status":
                record_status(self.db, store_id, body)
            elif kind in ("birth", "death"):
                record_birth(self.db, store_id, body, online=kind == "birth")
        except Exception as exc:  # a database hiccup must not kill the consumer; the store will resend
            if connection_lost(self.db, exc):  # no ack went out: reconnect and handle the message again
                raise DatabaseLost(str(exc)) from exc
            log.exception("could not handle %s from %s", kind, store_id, extra={"store_id": store_id})
            self._dead_letter(message.topic, f"{kind}: {type(exc).__name__}: {exc}", payload, store_id)

    def _wake(self) -> None:
        """Wake the main loop (a None in its queue) so it pushes the change feed now."""
        try:
            self._queue.put_nowait(None)
        except queue.Full:  # busy with messages: it looks at the feed between them anyway
            pass

    def _ack(self, message: mqtt.MQTTMessage) -> None:
        """Acknowledge a handled request to the broker (manual acks: see __init__)."""
        self.client.ack(message.mid, message.qos)

    def _answer(self, outgoing: list[Outgoing]) -> None:
        for item in outgoing:
            props = Properties(PacketTypes.PUBLISH)
            if item.correlation:
                props.CorrelationData = item.correlation
            self.out.publish(item.topic, item.payload, qos=1, properties=props)

    def _dead_letter(self, topic: str, reason: str, payload: bytes, store_id: str | None) -> None:
        self.counters.dead_letters += 1
        try:
            dead_letter(self.db, topic, reason, payload[:65536], store_id)
        except Exception:
            log.exception("could not record the dead letter either")

    def _push_feed(self) -> None:
        """Broadcast new changes so stores need not ask; stores ask (pull) when they see a gap."""
        try:
            latest = latest_change(self.db)
            while self._last_pushed < latest:
                page = changes_after(self.db, self._last_pushed, 2000)
                self.out.publish(BROADCAST_CHANGES, encode(page), qos=1)
                self.counters.pages_pushed += 1
                self._last_pushed = page.to_seq
        except Exception as exc:
            if connection_lost(self.db, exc):
                raise DatabaseLost(str(exc)) from exc
            log.exception("could not push the change feed")
