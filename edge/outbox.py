"""Transactional outbox: events are appended inside the caller's business transaction.

Sequence numbers come from a counter row updated in that same transaction, so they are gap-free
and never reused: a rolled-back sale takes its number back with it, a committed one keeps it.
An event is deleted only after HQ acknowledges a high-water mark at or above it.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from typing import Any

import msgspec

from tenpo.edge.membership import sealing
from tenpo.shared import hlc
from tenpo.shared.errors import UserError
from tenpo.shared.events import Payload, PayloadMismatch, decode_payload, mismatch
from tenpo.shared.protocol import Event


def next_counter(conn: sqlite3.Connection, name: str, step: int = 1) -> int:
    row = conn.execute(
        "INSERT INTO counters(name, value) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value RETURNING value",
        (name, step),
    ).fetchone()
    return int(row[0])


def read_counter(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def set_counter(conn: sqlite3.Connection, name: str, value: int) -> None:
    conn.execute(
        "INSERT INTO counters(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        (name, value),
    )


def get_meta(conn: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else default


def set_meta(conn: sqlite3.Connection, key: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM meta WHERE key = ?", (key,))
    else:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def stream_id(conn: sqlite3.Connection) -> str:
    """The id of this database's life; a wiped or new store starts a new stream at seq 1."""
    current = get_meta(conn, "stream")
    if current is None:
        current = uuid.uuid4().hex
        conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('stream', ?)", (current,))
        current = get_meta(conn, "stream")
    assert current is not None
    return current


def now_hlc(conn: sqlite3.Connection) -> int:
    """Advance and persist the store's hybrid logical clock (call inside a write transaction)."""
    stamp = hlc.tick(read_counter(conn, "hlc"), int(time.time() * 1000))
    set_counter(conn, "hlc", stamp)
    return stamp


_encoder = msgspec.json.Encoder()


def append(conn: sqlite3.Connection, payload: Payload) -> int:
    """Record the event ``payload`` (a catalogue Struct) in the current transaction; returns its seq.

    The payload is checked against its Struct's ranges first (constructing a Struct does not check
    them): what HQ would refuse never leaves the store, and a too-long text typed at the terminal is
    the user's error, said in one line."""
    text = _encoder.encode(payload)
    try:
        msgspec.json.decode(text, type=type(payload))
    except msgspec.ValidationError as exc:
        raise UserError(f"{payload.TYPE}: {mismatch(exc)}") from None
    return _insert(conn, payload.TYPE, payload.SCHEMA, text.decode())


def append_event(conn: sqlite3.Connection, event_type: str, payload: dict[str, Any], schema: int = 1) -> int:
    """Record an event given as a plain dict; it must fit its catalogue Struct (tenpo.shared.events)."""
    try:
        struct = decode_payload(event_type, schema, payload)
    except PayloadMismatch as exc:
        raise UserError(f"{event_type}: {exc}") from None
    return _insert(conn, event_type, schema, _encoder.encode(struct).decode())


def _insert(conn: sqlite3.Connection, event_type: str, schema: int, payload: str) -> int:
    seq = next_counter(conn, "outbox")
    event_id = uuid.uuid4().hex
    # An event carrying personal data rests sealed until it is published (issue 14, docs/encryption.md).
    stored = sealing.seal_payload(conn, event_id, payload)
    conn.execute(
        "INSERT INTO outbox(seq, id, type, schema, hlc, payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (seq, event_id, event_type, schema, now_hlc(conn), stored, time.time()),
    )
    return seq


def pending(conn: sqlite3.Connection, after_seq: int, limit: int) -> list[Event]:
    rows = conn.execute(
        "SELECT seq, id, type, schema, hlc, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
        (after_seq, limit),
    ).fetchall()
    return [Event(seq, eid, etype, schema, stamp, json.loads(sealing.open_payload(conn, eid, payload)))
            for seq, eid, etype, schema, stamp, payload in rows]  # fmt: skip


def acknowledge(conn: sqlite3.Connection, hwm: int) -> int:
    """Forget events HQ has durably applied; returns the new acknowledged mark."""
    current = read_counter(conn, "acked")
    if hwm <= current:
        return current
    hwm = min(hwm, read_counter(conn, "outbox"))  # never believe an ack beyond what we wrote
    conn.execute("DELETE FROM outbox WHERE seq <= ?", (hwm,))
    set_counter(conn, "acked", hwm)
    return hwm


def backlog(conn: sqlite3.Connection) -> tuple[int, float | None]:
    """Events not yet acknowledged, and the creation time of the oldest of them."""
    count, oldest = conn.execute("SELECT count(*), min(created_at) FROM outbox").fetchone()
    return int(count), oldest
