"""The channel API's own thread and database connection inside an aggregator.

A web shop's stock query must not wait behind a 500-store backlog of event batches, nor behind their
fsyncs: channel requests go to this thread (its own connection; SQLite readers do not block on the writer
in WAL mode), which answers, runs the reservation sweep and sends the waiting ``reserve`` answers as soon
as the aggregator's main thread says it applied a store's batch (``poke``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from tenpo.cloud.channel.service import ChannelDesk, Outgoing
from tenpo.cloud.db import Central
from tenpo.cloud.reconnect import Backoff, DatabaseLost, connection_lost, reopen

log = logging.getLogger(__name__)
QUEUE_LIMIT = 256
TICK_S = 0.25
RETRIES_AFTER_RECONNECT = 2  # then the request is answered "unavailable" (the channel retries with its key)


class ChannelWorker:
    def __init__(self, db_url: str, publish: Callable[[list[Outgoing]], None], ack: Callable[[mqtt.MQTTMessage], None],
                 feed_grew: Callable[[], None] = lambda: None) -> None:  # fmt: skip
        self.desk = ChannelDesk(Central(db_url))
        self._feed_grew = feed_grew  # tells the aggregator's main thread to push the feed now
        self._publish = publish
        self._ack = ack
        self._queue: queue.Queue[mqtt.MQTTMessage] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._wake = threading.Event()
        self._poked = False
        self._stop = threading.Event()
        self._backoff = Backoff()
        self._thread = threading.Thread(target=self._run, name="tenpo-channel", daemon=True)

    @property
    def feed_grew(self) -> bool:
        """A reservation was sent to a store since the last look: push the change feed now."""
        grew, self.desk.feed_grew = self.desk.feed_grew, False
        return grew

    def start(self) -> None:
        self._thread.start()

    def submit(self, message: mqtt.MQTTMessage) -> None:
        """From paho's thread: queue a request (waits while full, so the broker holds the rest)."""
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=0.5)
                self._wake.set()
                return
            except queue.Full:
                continue

    def poke(self) -> None:
        """A store's batch was applied: its answer to a reservation a channel waits for may be in it."""
        self._poked = True
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.desk.flush_stats()
        self.desk.db.close()

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_tick - time.monotonic()))
            self._wake.clear()
            poked, self._poked = self._poked, False
            while True:
                try:
                    message = self._queue.get_nowait()
                except queue.Empty:
                    break
                self._answer(message)
                self._ack(message)
                if self.desk.feed_grew:
                    self._feed_grew()
            if poked or time.monotonic() >= next_tick:  # a store's batch was applied, or the tick: answers, sweep
                next_tick = time.monotonic() + TICK_S
                try:
                    self._publish(self.desk.tick())
                except Exception:
                    log.exception("channel housekeeping failed")
                if connection_lost(self.desk.db):  # the sweep or the answers found the connection gone
                    reopen(self.desk.db, self._stop, "channel API", None, self._backoff)

    def _answer(self, message: mqtt.MQTTMessage) -> None:
        """Answer one request; a lost database connection is reopened (back-off) and the request run again."""
        props = getattr(message, "properties", None)
        for attempt in range(RETRIES_AFTER_RECONNECT + 1):
            try:
                self._publish(self.desk.handle(message.topic, bytes(message.payload), getattr(props, "ResponseTopic", None),
                                               getattr(props, "CorrelationData", None),
                                               lost_raises=attempt < RETRIES_AFTER_RECONNECT))  # fmt: skip
                return
            except DatabaseLost as lost:
                if not reopen(self.desk.db, self._stop, "channel API", lost.__cause__, self._backoff):
                    return
            except Exception:  # handle() answers its own failures; this is the last line
                log.exception("channel request on %s not handled", message.topic)
                return
