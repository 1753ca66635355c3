"""Answer channel API requests (docs/channel.md): validate, run, answer on the request's response topic.

The aggregator hands each request here from its one database thread and publishes what comes back.
Nothing a channel sends can stop it: a request that does not decode, names an unknown operation or
carries a response topic outside its own subtree is counted (``channel_stats``) and answered with an
error code where an answer is possible; a database failure is answered ``unavailable``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec

from tenpo.cloud.changes import record_changes
from tenpo.cloud.channel import extras, reservations
from tenpo.cloud.db import Central
from tenpo.cloud.reconnect import DatabaseLost, connection_lost
from tenpo.shared.channel_api import (
    CancelRequest,
    ChannelError,
    ReservationQuery,
    ReserveRequest,
    Response,
    StockQuery,
    decode_request,
    encode_message,
    failed,
    ok,
    parse_request_topic,
    response_topic_allowed,
)

log = logging.getLogger(__name__)
SWEEP_INTERVAL_S = float(os.environ.get("TENPO_RESERVATION_SWEEP_S", "5"))  # the expiry job's period
STATS_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes
    correlation: bytes | None


class ChannelDesk:
    """The channel API at one aggregator. ``pending`` tells the aggregator to push the change feed now."""

    def __init__(self, db: Central, sweep_interval_s: float = SWEEP_INTERVAL_S) -> None:
        self.db = db
        self.stats: Counter[tuple[str, str]] = Counter()
        self.feed_grew = False
        self.sweep_interval_s = sweep_interval_s
        self._next_sweep = 0.0
        self._next_stats = time.monotonic() + STATS_INTERVAL_S

    # ------------------------------------------------------------------ requests

    def handle(self, topic: str, payload: bytes, response_topic: str | None, correlation: bytes | None,
               now: float | None = None, lost_raises: bool = False) -> list[Outgoing]:  # fmt: skip
        """The answers to one request. ``lost_raises``: a lost database connection raises DatabaseLost (the
        caller reconnects and asks again; nothing was committed or answered) instead of answering unavailable."""
        now = time.time() if now is None else now
        parsed = parse_request_topic(topic)
        if parsed is None:
            self.stats[("?", "bad_topic")] += 1
            return []
        channel, op = parsed
        if not response_topic or not response_topic_allowed(channel, response_topic):
            # Nowhere this channel may hear an answer: HQ never publishes outside its res/ subtree.
            self.stats[(channel, "forbidden")] += 1
            log.warning("channel %s: request on %s with response topic %r refused", channel, topic,
                        (response_topic or "")[:200])  # fmt: skip
            return []
        response: Response | None
        try:
            request = decode_request(op, payload)
            response = self._run(channel, op, request, response_topic, correlation, now)
        except ChannelError as exc:
            response = failed(op, exc.code, exc.message)
        except Exception as exc:  # the database, not the request: the channel retries with the same key
            if lost_raises and connection_lost(self.db, exc):
                raise DatabaseLost(str(exc)) from exc
            log.exception("channel %s: %s not answered", channel, op)
            response = failed(op, "unavailable", f"HQ could not answer now ({type(exc).__name__}); retry")
        if response is None:  # a reserve waiting for the store: answered by replies()
            self.stats[(channel, "ok")] += 1
            return []
        self.stats[(channel, "ok" if response.ok else response.error.code if response.error else "?")] += 1
        return [Outgoing(response_topic, encode_message(response), correlation)]

    def _run(self, channel: str, op: str, request: Any, reply: str, correlation: bytes | None,
             now: float) -> Response | None:  # fmt: skip
        if op in extras.HANDLERS:  # issue 18 parts 4-5 (H9): points at the web checkout, the member app
            result, grew = extras.run(self.db, channel, op, request, now)
            self.feed_grew = self.feed_grew or grew
            return Response(ok=True, op=op, result=result)
        if isinstance(request, StockQuery):
            found = reservations.stock(self.db, request.sku, request.store, now)
            if found is None:
                raise ChannelError("not_found", f"no store or product {request.sku!r}"
                                   + (f" at {request.store}" if request.store else ""))  # fmt: skip
            return ok(op, found)
        if isinstance(request, ReservationQuery):
            return ok(op, reservations.answer(self._own(channel, request.reservation_id)))
        if isinstance(request, ReserveRequest):
            return self._reserve(channel, request, reply, correlation, now)
        if isinstance(request, CancelRequest):
            return self._cancel(channel, request, now)
        raise ChannelError("bad_request", f"unknown operation {op!r}")

    def _own(self, channel: str, reservation_id: str) -> dict[str, Any]:
        record = reservations.row(self.db, reservation_id)
        if record is None or record["channel"] != channel:  # another channel's: as if it did not exist
            raise ChannelError("not_found", f"no reservation {reservation_id} of channel {channel}")
        return record

    def _reserve(self, channel: str, request: ReserveRequest, reply: str, correlation: bytes | None,
                 now: float) -> Response | None:  # fmt: skip
        fingerprint = _fingerprint("reserve", request, ("wait_s",))
        with self.db.transaction():
            reservation_id = self._remembered(channel, request.key, "reserve", fingerprint)
            if reservation_id is None:
                if self.db.scalar("SELECT 1 FROM products WHERE sku = ?", (request.sku,)) is None:
                    raise ChannelError("not_found", f"no product {request.sku!r}")
                for store in {request.store, request.pickup_store or request.store}:
                    if self.db.scalar("SELECT 1 FROM stores WHERE store_id = ?", (store,)) is None:
                        raise ChannelError("not_found", f"no store {store!r}")
                reservation_id = reservations.next_id(self.db)
                record, changes = reservations.create(
                    self.db, reservation_id=reservation_id, channel=channel, store_id=request.store, sku=request.sku,
                    qty=request.qty, member_id=request.member, customer=request.customer,
                    pickup_store=request.pickup_store if request.pickup_store != request.store else None,
                    hold_s=request.hold_h * 3600.0, confirm_s=float(request.confirm_s), now=now,
                )  # fmt: skip
                record_changes(self.db, changes, now)
                self.feed_grew = self.feed_grew or bool(changes)
                self.db.execute("INSERT INTO channel_requests(channel, idem_key, op, fingerprint, reservation_id,"
                                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                                (channel, request.key, "reserve", fingerprint, reservation_id, now))  # fmt: skip
            else:
                found = reservations.row(self.db, reservation_id)
                assert found is not None
                record = found
            if record["state"] == "requested" and request.wait_s > 0:
                reservations.wait_for_store(self.db, reservation_id, reply, correlation, now + request.wait_s)
                return None
        return ok("reserve", reservations.answer(record))

    def _cancel(self, channel: str, request: CancelRequest, now: float) -> Response:
        fingerprint = _fingerprint("cancel", request, ())
        with self.db.transaction():
            done = self._remembered(channel, request.key, "cancel", fingerprint)
            record = self._own(channel, request.reservation_id)
            if done is None:
                if reservations.is_final(record["state"]):
                    raise ChannelError("conflict", f"reservation {request.reservation_id} is already {record['state']}")
                changes = reservations.cancel(self.db, record, now)
                record_changes(self.db, changes, now)
                self.feed_grew = self.feed_grew or bool(changes)
                self.db.execute("INSERT INTO channel_requests(channel, idem_key, op, fingerprint, reservation_id,"
                                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                                (channel, request.key, "cancel", fingerprint, request.reservation_id, now))  # fmt: skip
                record = self._own(channel, request.reservation_id)
        return ok("cancel", reservations.answer(record))

    def _remembered(self, channel: str, key: str, op: str, fingerprint: str) -> str | None:
        """The reservation an earlier write with this key made; ChannelError(conflict) if the key was used for
        a different request."""
        found = self.db.one("SELECT op, fingerprint, reservation_id FROM channel_requests WHERE channel = ?"
                            " AND idem_key = ?" + self.db.lock_suffix(), (channel, key))  # fmt: skip
        if found is None:
            return None
        if found[0] != op or found[1] != fingerprint:
            raise ChannelError("conflict", f"idempotency key {key!r} was used for a different request")
        return str(found[2])

    # ------------------------------------------------------------------ housekeeping

    def replies(self, now: float | None = None) -> list[Outgoing]:
        """Answers to waiting ``reserve`` requests that can go now."""
        now = time.time() if now is None else now
        try:
            due = reservations.due_replies(self.db, now)
        except Exception:
            log.exception("could not read waiting reservation answers")
            return []
        return [Outgoing(topic, encode_message(ok("reserve", found)), correlation or None)
                for topic, correlation, found in due]  # fmt: skip

    def tick(self, now: float | None = None) -> list[Outgoing]:
        """Every push interval: the sweep when due, the stats to the database, and waiting answers."""
        mono = time.monotonic()
        if mono >= self._next_sweep:
            self._next_sweep = mono + self.sweep_interval_s
            try:
                self.feed_grew = reservations.sweep(self.db, time.time() if now is None else now) > 0 or self.feed_grew
            except Exception:
                log.exception("reservation sweep failed; next try in %.0f s", self.sweep_interval_s)
        if mono >= self._next_stats:
            self._next_stats = mono + STATS_INTERVAL_S
            self.flush_stats()
        return self.replies(now)

    def flush_stats(self) -> None:
        if not self.stats:
            return
        counts, self.stats = self.stats, Counter()
        try:
            with self.db.transaction():
                for (channel, outcome), n in sorted(counts.items()):
                    self.db.execute("INSERT INTO channel_stats(channel, outcome, n) VALUES (?, ?, ?)"
                                    " ON CONFLICT(channel, outcome) DO UPDATE SET n = channel_stats.n + excluded.n",
                                    (channel, outcome, n))  # fmt: skip
        except Exception:
            log.exception("could not record channel counters")
            self.stats.update(counts)


_ADDED_LATER = ("pickup_store",)  # left out when unset: a key stored before they existed keeps its fingerprint


def _fingerprint(op: str, request: msgspec.Struct, ignore: tuple[str, ...]) -> str:
    fields = {k: v for k, v in msgspec.to_builtins(request).items()
              if k not in ignore and not (k in _ADDED_LATER and v is None)}  # fmt: skip
    return hashlib.sha256(op.encode() + msgspec.json.encode(dict(sorted(fields.items())))).hexdigest()


def no_delay(client: Any, *args: Any) -> None:
    """An on_connect callback: TCP_NODELAY on the client's socket, so a small answer leaves at once instead of
    waiting (Nagle) for the ACK of the previous one; paho does not set it."""
    sock = client.socket()
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            log.debug("TCP_NODELAY not set", exc_info=True)
