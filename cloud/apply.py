"""Apply upstream messages at HQ: verify, deduplicate, write effects and the change feed in one transaction.

Exactly-once in effect: the store row is locked, events at or below its ``last_applied_seq`` are
duplicates, the next expected seq is applied, and a later one means a gap (the store resends).
The events table's primary key (store_id, stream, seq) backs this up if anything slips past the lock
(on PostgreSQL, where events are partitioned by month, the key also holds applied_at: the lock is the guard).
An event that cannot be applied is a dead letter on its own; the stream always moves on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tenpo.cloud.authority_check import check_batch
from tenpo.cloud.changes import audit
from tenpo.cloud.db import Central
from tenpo.cloud.effects import plan_event
from tenpo.cloud.ledgers import INSERT_STOCK
from tenpo.cloud.plan import ChangeTuple, Origin, PayloadError, Plan, decode_each
from tenpo.cloud.publish import publish_changes
from tenpo.cloud.stock_apply import levels_by_apply, number_array, text_array, write_stock_entries
from tenpo.shared import crypto
from tenpo.shared.errors import ConfigError
from tenpo.shared.protocol import (
    MAX_UPSTREAM_BYTES,
    PROTOCOL_VERSION,
    UP_BODY_TYPES,
    Ack,
    Envelope,
    Event,
    EventBatch,
    ProtocolError,
    decode,
    encode,
    parse_up_topic,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Opened:
    store_id: str
    kind: str
    body: Any  # the decoded msgspec struct for ``kind``


class Rejected(Exception):
    """An upstream message that cannot be applied; goes to the dead-letter table with ``reason``."""

    def __init__(self, reason: str, store_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.store_id = store_id


class KeyRing:
    """Registered store public keys, cached; reloaded when a store is unknown (it may have just been added)."""

    def __init__(self, db: Central) -> None:
        self._db = db
        self._keys: dict[str, Ed25519PublicKey] = {}

    def get(self, store_id: str) -> Ed25519PublicKey | None:
        key = self._keys.get(store_id)
        if key is None:
            pem = self._db.scalar("SELECT public_key FROM stores WHERE store_id = ?", (store_id,))
            if pem is None:
                return None
            try:
                key = crypto.load_public_key_pem(pem)
            except ConfigError:
                return None
            self._keys[store_id] = key
        return key


def open_envelope(topic: str, payload: bytes, keys: KeyRing) -> Opened:
    """Check size, topic, JSON, version, store identity and signature; raise Rejected with the reason."""
    parsed = parse_up_topic(topic)
    topic_store = parsed[0] if parsed else None
    if parsed is None:
        raise Rejected(f"topic {topic!r} is not a store upstream topic")
    if len(payload) > MAX_UPSTREAM_BYTES:
        raise Rejected(f"oversized: {len(payload)} bytes > {MAX_UPSTREAM_BYTES}", topic_store)
    store_id, kind = parsed
    body_type = UP_BODY_TYPES.get(kind)
    if body_type is None:
        raise Rejected(f"unknown message kind {kind!r}", store_id)
    try:
        envelope = decode(payload, Envelope)
    except ProtocolError as exc:
        raise Rejected(f"envelope {exc}", store_id) from None
    if envelope.v != PROTOCOL_VERSION:
        raise Rejected(f"unsupported protocol version {envelope.v}", store_id)
    if envelope.store != store_id:
        raise Rejected(f"store id {envelope.store!r} differs from the topic's {store_id!r}", store_id)
    if envelope.kind != kind:
        raise Rejected(f"kind {envelope.kind!r} differs from the topic's {kind!r}", store_id)
    key = keys.get(store_id)
    if key is None:
        raise Rejected(f"unknown store {store_id!r} (not registered)", store_id)
    body_bytes = envelope.body.encode()
    if not crypto.verify(key, body_bytes, envelope.sig):
        raise Rejected("bad signature", store_id)
    try:
        body = decode(body_bytes, body_type)
    except ProtocolError as exc:
        raise Rejected(f"{kind} body {exc}", store_id) from None
    return Opened(store_id, kind, body)


def dead_letter(
    db: Central, topic: str, reason: str, payload: bytes, store_id: str | None = None, event_seq: int | None = None
) -> None:
    log.warning("dead letter on %s: %s", topic, reason)
    with db.transaction():
        _insert_dead_letter(db, topic, reason, payload, store_id, event_seq)


def _insert_dead_letter(
    db: Central, topic: str, reason: str, payload: bytes, store_id: str | None, event_seq: int | None
) -> None:
    db.execute(
        "INSERT INTO dead_letters(store_id, topic, reason, payload, event_seq, received_at) VALUES (?, ?, ?, ?, ?, ?)",
        (store_id, topic, reason, payload, event_seq, time.time()),
    )
    if store_id is not None:
        db.execute("UPDATE stores SET dead_letters = dead_letters + 1 WHERE store_id = ?", (store_id,))


# ---------------------------------------------------------------------------- event batches


INSERT_EVENT = (
    "INSERT INTO events(store_id, stream, seq, event_id, type, schema, hlc, payload, applied_at, applied_by)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


# PostgreSQL: a batch's event rows as arrays, one statement that can go out in the batch's pipeline (COPY cannot)
INSERT_EVENTS = (
    "INSERT INTO events(store_id, stream, seq, event_id, type, schema, hlc, payload, applied_at, applied_by)"
    " SELECT ?::text, ?::text, e.seq, e.event_id, e.type, e.schema, e.hlc, e.payload, ?::double precision, ?::text"
    " FROM unnest(?::bigint[], ?::text[], ?::text[], ?::integer[], ?::bigint[], ?::text[])"
    " AS e(seq, event_id, type, schema, hlc, payload)"
)


class _OneEventFailed(Exception):
    """Raised out of a whole-batch apply so its transaction rolls back and the batch goes event by event."""


def apply_batch(db: Central, store_id: str, batch: EventBatch, topic: str = "", applied_by: str = "") -> Ack:
    """Apply the batch's next events in one transaction. If any event's effects fail (a number beyond 64 bits,
    a constraint), the batch is applied again one event per savepoint: that event alone is a dead letter.
    Savepoints cost SQLite a sub-journal per page, so the common case goes without them."""
    try:
        return _apply_batch(db, store_id, batch, topic, applied_by, one_by_one=False)
    except _OneEventFailed:
        log.warning("a batch of store %s could not be applied whole; applying its events one by one", store_id)
        return _apply_batch(db, store_id, batch, topic, applied_by, one_by_one=True)


def _apply_batch(db: Central, store_id: str, batch: EventBatch, topic: str, applied_by: str, one_by_one: bool) -> Ack:
    now = time.time()
    db.ensure_history_months(now)
    with _transaction(db, one_by_one) as pipeline:
        row = db.one("SELECT stream, last_applied_seq FROM stores WHERE store_id = ?" + db.lock_suffix(), (store_id,))
        if row is None:
            return Ack(batch.stream, 0, error="unknown store")
        taken = take_next(db, topic, store_id, row[0], int(row[1]), batch)
        if isinstance(taken, Ack):
            return taken
        stream, last, todo = taken.stream, taken.last, taken.todo
        # Progress first: the feed's points balances say up to which seq of each store they count.
        origin = Origin(store_id, stream)
        if one_by_one:
            _record_progress(db, store_id, stream, last, now, batch.backlog)
            stored = [event for event in todo if _apply_alone(db, topic, origin, event, now, applied_by)]
            if stored:
                db.execute("UPDATE stores SET events_applied = events_applied + ?, newest_event_hlc = ? WHERE store_id = ?",
                           (len(stored), stored[-1].hlc, store_id))  # fmt: skip
        else:
            try:
                write_taken(db, topic, origin, last, now, batch.backlog, todo, applied_by)
                if pipeline is not None and pipeline.result_queue:  # what is still in flight answers here
                    pipeline.sync()
            except Exception as exc:
                raise _OneEventFailed from exc
    return Ack(batch.stream, last, gap=taken.gap)


@dataclass(slots=True)
class Taken:
    """What a batch brings that its store has not applied yet: the stream afterwards, its last seq, the events."""

    stream: str
    last: int
    todo: list[Event]
    gap: bool


def take_next(db: Central, topic: str, store_id: str, stream: str | None, last: int, batch: EventBatch) -> Ack | Taken:
    """The batch's events after ``last`` (the store's applied mark, its row locked), up to the first gap; or the Ack
    that answers the batch without applying anything (a replay of an ended stream, an unknown one)."""
    if stream != batch.stream:
        refused = _refuse_ended_stream(db, topic, store_id, stream, batch)
        if refused is not None:
            return refused
        first = batch.events[0].seq if batch.events else None
        if stream is not None and first != 1:
            # The first batch of a new store database arriving after its successors: resend from its start.
            return Ack(batch.stream, 0, gap=True, error="unknown stream: resend from seq 1")
        if stream is not None:
            log.warning("store %s started a new stream %s (database replaced); old stream ended at %d",
                        store_id, batch.stream, last)  # fmt: skip
            audit(
                db, "aggregator", "store.new_stream", store_id, {"old": stream, "new": batch.stream, "old_last": last}
            )
        stream, last = batch.stream, 0
    todo: list[Event] = []
    duplicates: list[tuple[int, str]] = []
    gap = False
    for event in batch.events:
        if event.seq <= last:
            duplicates.append((event.seq, event.id))
            continue
        if event.seq != last + 1:
            gap = True
            break
        todo.append(event)
        last = event.seq
    if duplicates:
        _check_reused_sequences(db, topic, store_id, stream, duplicates)
    return Taken(stream, last, todo, gap)


def write_taken(db: Central, topic: str, origin: Origin, last: int, now: float, backlog: int, todo: list[Event],
                applied_by: str) -> None:  # fmt: skip
    """The store's progress, then the events and their effects, whole (a failure propagates: the caller rolls back).
    Whole or not at all, so the count is known now: one statement and one new version of the store row."""
    _record_progress(db, origin.store_id, origin.stream, last, now, backlog, todo)
    _apply_events(db, topic, origin, todo, now, applied_by)


def _transaction(db: Central, one_by_one: bool) -> AbstractContextManager[Any]:
    """PostgreSQL, a whole batch: pipelined (BEGIN, the store's progress, the events and dead letters go out with the
    next statement whose answer is read, not a round trip each, where a busy machine makes each round trip wait for
    the server to be scheduled); yields the pipeline. Otherwise a plain transaction (the savepoints of one by one
    each wait for their answer anyway); yields None."""
    if one_by_one or db.dialect != "postgresql":
        return _plain(db)
    return db.pipelined_transaction()


@contextmanager
def _plain(db: Central) -> Iterator[None]:
    with db.transaction():
        yield None


def _record_progress(db: Central, store_id: str, stream: str, last: int, now: float, backlog: int,
                     stored: list[Event] | None = None) -> None:  # fmt: skip
    if not stored:
        db.execute("UPDATE stores SET stream = ?, last_applied_seq = ?, last_seen = ?, backlog = ? WHERE store_id = ?",
                   (stream, last, now, backlog, store_id))  # fmt: skip
        return
    db.execute("UPDATE stores SET stream = ?, last_applied_seq = ?, last_seen = ?, backlog = ?,"
               " events_applied = events_applied + ?, newest_event_hlc = ? WHERE store_id = ?",
               (stream, last, now, backlog, len(stored), stored[-1].hlc, store_id))  # fmt: skip


def _apply_events(db: Central, topic: str, origin: Origin, events: list[Event], now: float, applied_by: str) -> None:
    """Store the events and write their effects; an event its planner refuses is stored and dead-lettered.

    Store authority (docs/authority.md) decides first: an event the store may not say is stored and
    dead-lettered naming the rule; a points entry whose sale is still to come waits for it."""
    # The event rows first: in a pipeline the server writes them while the planning below runs (issue 19).
    _insert_events(db, origin, events, now, applied_by)
    plan = Plan()
    decoded = decode_each(events)  # once, for the check and the planners
    verdicts = check_batch(db, origin, events, now, decoded)
    for held_origin, held in verdicts.released:  # entries of an earlier batch whose sale came in this one
        plan_event(plan, held_origin, held, now)
    for held, refusal in verdicts.late_refused:
        _refused(db, topic, origin, held, refusal)
    for event in events:
        if verdicts.skip(event.seq):
            why = verdicts.refused.get(event.seq)
            if why is not None:
                _refused(db, topic, origin, event, why)
            continue
        try:
            plan_event(plan, origin, event, now, decoded)
        except PayloadError as exc:
            _insert_dead_letter(
                db, topic, f"event {event.seq} ({event.type}): {exc}",
                json.dumps(event.payload, ensure_ascii=False).encode(), origin.store_id, event.seq,
            )  # fmt: skip
    _write_plan(db, plan, now)


def _insert_events(db: Central, origin: Origin, events: list[Event], now: float, applied_by: str) -> None:
    if db.dialect != "postgresql" or not events:
        db.executemany(INSERT_EVENT, [_event_row(origin, event, now, applied_by) for event in events])
        return
    db.execute(INSERT_EVENTS, (origin.store_id, origin.stream, now, applied_by,
                               number_array([e.seq for e in events]), text_array([e.id for e in events]),
                               text_array([e.type for e in events]), number_array([e.schema for e in events]),
                               number_array([e.hlc for e in events]),
                               text_array([_payload_text(e.payload) for e in events])))  # fmt: skip


def _refused(db: Central, topic: str, origin: Origin, event: Event, refusal: object) -> None:
    """A stored event the store may not say (docs/authority.md): its dead letter names the rule."""
    payload = json.dumps(event.payload, ensure_ascii=False).encode()
    _insert_dead_letter(db, topic, f"event {event.seq} ({event.type}): {refusal}", payload, origin.store_id, event.seq)


_PAYLOAD_JSON = msgspec.json.Encoder()  # compact JSON, a tenth of json.dumps's time (a payload per event row)
_PAYLOAD_JSON_SLOW = json.JSONEncoder(ensure_ascii=False).encode


def _payload_text(payload: Any) -> str:
    try:
        return _PAYLOAD_JSON.encode(payload).decode()
    except (TypeError, ValueError, msgspec.EncodeError):  # what msgspec does not encode: json.dumps's text
        return _PAYLOAD_JSON_SLOW(payload)


def _event_row(origin: Origin, event: Event, now: float, applied_by: str) -> tuple[Any, ...]:
    return (origin.store_id, origin.stream, event.seq, event.id, event.type, event.schema, event.hlc,
            _payload_text(event.payload), now, applied_by)  # fmt: skip


def _write_plan(db: Central, plan: Plan, now: float) -> None:
    # PostgreSQL: the stock ledger rows last, with their levels and feed entries in one upsert (cloud/stock_apply.py);
    # last, so the change counter's lock it takes is held over as little of the transaction as may be.
    stock = plan.rows.get(INSERT_STOCK) if levels_by_apply(db) else None
    for sql, rows in plan.rows.items():
        if rows is not stock:
            db.executemany(sql, rows)
    if stock:
        write_stock_entries(db, stock, plan, now)
    extra: list[ChangeTuple] = []
    for hook in plan.hooks.values():
        extra += hook(db, now)
    publish_changes(db, plan, now, extra)


def _apply_alone(db: Central, topic: str, origin: Origin, event: Event, now: float, applied_by: str) -> bool:
    """Apply one event in its own savepoint; if that fails, it becomes a dead letter with the reason.

    True if the event is stored at HQ (applied, or kept without effects so a retry after a fix can apply it).
    """
    try:
        with db.savepoint():
            _apply_events(db, topic, origin, [event], now, applied_by)
        return True
    except Exception as exc:
        reason = _why_not_applied(db, origin, event, exc)
    log.warning("dead letter from %s: %s", origin.store_id, reason)
    try:
        with db.savepoint():
            db.execute(INSERT_EVENT, _event_row(origin, event, now, applied_by))
        stored = True
    except Exception:  # the event row itself is refused (a duplicate key, a number beyond 64 bits): keep the letter
        stored = False
    _insert_dead_letter(db, topic, reason, encode(event), origin.store_id, event.seq if stored else None)
    return stored


def _why_not_applied(db: Central, origin: Origin, event: Event, exc: Exception) -> str:
    head = f"event {event.seq} ({event.type})"
    if "Integrity" in type(exc).__name__ or "UniqueViolation" in type(exc).__name__:
        applied = db.scalar("SELECT event_id FROM events WHERE store_id = ? AND stream = ? AND seq = ?",
                            (origin.store_id, origin.stream, event.seq))  # fmt: skip
        if applied is not None:
            return (f"{head}: seq {event.seq} of stream {origin.stream} was already applied (as event {applied}):"
                    " a replay of an old stream after the store's database was replaced; not applied again")  # fmt: skip
    detail = (str(exc).strip().splitlines() or [""])[0]
    return f"{head}: cannot be applied ({type(exc).__name__}: {detail})"


def _refuse_ended_stream(db: Central, topic: str, store_id: str, current: str | None, batch: EventBatch) -> Ack | None:
    """A batch of a stream HQ applied before the store moved to another (its database was replaced or wiped):
    a late delivery or a replay. Applying it would switch the store back to a dead stream, so it is kept
    as one dead letter and acknowledged, so the sender stops resending it."""
    if current is None or not batch.events:
        return None
    applied = db.scalar(  # its rows may have been archived (cloud/history.py): then archived_streams knows it
        "SELECT max(seq) FROM (SELECT max(seq) AS seq FROM events WHERE store_id = ? AND stream = ?"
        " UNION ALL SELECT last_seq FROM archived_streams WHERE store_id = ? AND stream = ?) AS known",
        (store_id, batch.stream, store_id, batch.stream),
    )
    if applied is None:
        return None
    low, high = batch.events[0].seq, batch.events[-1].seq
    reason = (f"events {low}-{high} of stream {batch.stream}: a replay of an old stream after the store's database was"
              f" replaced (HQ applied that stream up to seq {int(applied)}; the store now sends stream {current});"
              " not applied")  # fmt: skip
    log.warning("dead letter from %s: %s", store_id, reason)
    _insert_dead_letter(db, topic, reason, encode(batch), store_id, None)
    return Ack(batch.stream, high, error="this stream ended: the store's database was replaced")


def reapply_event(db: Central, dead_letter_id: int, now: float | None = None) -> str | None:
    """Run the planner again for an event HQ stored but could not apply (its dead letter), after a fix:
    an upgrade that knows its type, a corrected product list. None when applied; otherwise why not.

    The letter is closed in the same transaction as the effects, so two retries cannot apply it twice.
    """
    now = now or time.time()
    with db.transaction():
        letter = db.one(
            "SELECT store_id, event_seq, reason FROM dead_letters WHERE id = ? AND status = 'open'" + db.lock_suffix(),
            (dead_letter_id,),
        )
        if letter is None or letter[1] is None:
            return "not an open dead letter of a stored event"
        store_id, seq, reason = letter[0], int(letter[1]), str(letter[2])
        if "sequence number reused" in reason:
            return "a reused sequence number: the stored event is the first one, already applied"
        if ": refused by authority rule " in reason:  # docs/authority.md: the store may not say it
            return "refused by the store authority rules: a retry would apply what the store may not say; discard it"
        row = db.one(
            "SELECT stream, event_id, type, schema, hlc, payload FROM events WHERE store_id = ? AND seq = ?"
            " ORDER BY applied_at DESC LIMIT 1",
            (store_id, seq),
        )
        if row is None:
            return f"event {seq} of {store_id} is not stored at HQ"
        event = Event(seq, row[1], row[2], int(row[3]), int(row[4]), json.loads(row[5]))
        plan = Plan()
        try:
            plan_event(plan, Origin(store_id, row[0]), event, now)
        except PayloadError as exc:
            return f"{event.type}: {exc}"
        try:
            with db.savepoint():
                _write_plan(db, plan, now)
        except Exception as exc:
            return _why_not_applied(db, Origin(store_id, row[0]), event, exc)
        db.execute("UPDATE dead_letters SET status = 'retried', note = ? WHERE id = ?",
                   (f"re-applied at {time.strftime('%Y-%m-%d %H:%M:%S')}", dead_letter_id))  # fmt: skip
    return None


def _check_reused_sequences(
    db: Central, topic: str, store_id: str, stream: str, duplicates: list[tuple[int, str]]
) -> None:
    """A duplicate seq with a different event id means the store reused numbers (e.g. restored an old backup)."""
    low, high = duplicates[0][0], duplicates[-1][0]
    known = dict(
        db.all(
            "SELECT seq, event_id FROM events WHERE store_id = ? AND stream = ? AND seq BETWEEN ? AND ?",
            (store_id, stream, low, high),
        )
    )
    for seq, event_id in duplicates:
        if seq in known and known[seq] != event_id:
            _insert_dead_letter(
                db, topic, f"event {seq}: sequence number reused with a different event (restored backup?)",
                event_id.encode(), store_id, seq,
            )  # fmt: skip
