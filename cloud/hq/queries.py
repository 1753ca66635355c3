"""Monitor-only reads of the central database: a store's recent history, dead letters, inspections.

The stores overview itself comes from ``tenpo.cloud.status`` (shared with `tenpo cloud status`).
Tables other areas add later (``inspections``) are looked up defensively: absent → None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tenpo.cloud.db import Central
from tenpo.cloud.status import latest_change, table_exists

RECENT_EVENTS = 500  # "recent" = the store's last N applied events, read through the primary key
PAYLOAD_PREVIEW = 160
INSPECTION_TIME_COLUMNS = ("at", "finished_at", "completed_at", "created_at", "started_at")
INSPECTION_SHOWN = ("at", "inspection_id", "shipment_id", "status", "verdict", "summary")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    store_id: str | None
    topic: str
    reason: str
    payload_preview: str
    event_seq: int | None
    status: str
    note: str | None
    received_at: float


@dataclass(frozen=True, slots=True)
class StoreDetail:
    store_id: str
    name: str
    stream: str | None
    last_applied_seq: int
    cursor: int | None  # the store's downstream cursor as last reported
    latest_change: int  # HQ's newest change
    event_types: tuple[tuple[str, int, int], ...]  # (type, count, newest seq) over the recent events
    dead_letters: tuple[DeadLetter, ...]
    inspections: tuple[tuple[str, ...], tuple[tuple[Any, ...], ...]] | None  # (columns, rows); None: no table


def preview(payload: bytes | str | memoryview | None, limit: int = PAYLOAD_PREVIEW) -> str:
    """Readable start of a raw payload: text as text, binary as a byte count (never raises)."""
    if payload is None:
        return ""
    if isinstance(payload, memoryview):
        payload = payload.tobytes()
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else str(payload)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


DEAD_LETTER_COLUMNS = "id, store_id, topic, reason, payload, event_seq, status, note, received_at"


def _dead_letter(row: tuple[Any, ...]) -> DeadLetter:
    id_, store_id, topic, reason, payload, seq, status, note, received_at = row
    return DeadLetter(int(id_), store_id, topic, reason, preview(payload), seq, status, note, float(received_at))


def dead_letters(db: Central, include_closed: bool = False, store_id: str | None = None, limit: int = 200) -> list[DeadLetter]:
    where, params = [], []
    if not include_closed:
        where.append("status = 'open'")
    if store_id is not None:
        where.append("store_id = ?")
        params.append(store_id)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = db.all(f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters{clause} ORDER BY received_at DESC, id DESC LIMIT ?",
                  (*params, limit))  # fmt: skip
    return [_dead_letter(row) for row in rows]


def dead_letter_raw(db: Central, dead_letter_id: int) -> tuple[str, bytes, str | None, int | None, str] | None:
    """(topic, payload bytes, store id, event seq, status) of one dead letter."""
    row = db.one("SELECT topic, payload, store_id, event_seq, status FROM dead_letters WHERE id = ?", (dead_letter_id,))
    if row is None:
        return None
    payload = row[1]
    payload = bytes(payload) if payload is not None else b""
    return row[0], payload, row[2], row[3], row[4]


def recent_event_types(db: Central, store_id: str, stream: str | None, last_seq: int) -> list[tuple[str, int, int]]:
    rows = db.all(
        "SELECT type, count(*), max(seq) FROM events WHERE store_id = ? AND stream = ? AND seq > ?"
        " GROUP BY type ORDER BY count(*) DESC, type",
        (store_id, stream or "", last_seq - RECENT_EVENTS),
    )
    return [(t, int(c), int(s)) for t, c, s in rows]


def recent_inspections(db: Central, store_id: str, limit: int = 10) -> tuple[tuple[str, ...], tuple[tuple[Any, ...], ...]] | None:
    """The store's latest dock inspections, whatever columns the inspection area gave its table."""
    if not table_exists(db, "inspections"):
        return None
    columns = [c[0] for c in db.execute("SELECT * FROM inspections WHERE 1 = 0").description]
    if "store_id" not in columns:
        return tuple(columns), ()
    order = next((c for c in INSPECTION_TIME_COLUMNS if c in columns), None)
    order_by = f" ORDER BY {order} DESC" if order else ""
    shown = [c for c in INSPECTION_SHOWN if c in columns] or [c for c in columns if c != "store_id"]
    rows = db.all(f"SELECT {', '.join(shown)} FROM inspections WHERE store_id = ?{order_by} LIMIT ?", (store_id, limit))
    return tuple(shown), tuple(tuple(r) for r in rows)


def store_detail(db: Central, store_id: str) -> StoreDetail | None:
    row = db.one("SELECT name, stream, last_applied_seq, cursor FROM stores WHERE store_id = ?", (store_id,))
    if row is None:
        return None
    name, stream, last, cursor = row[0] or "", row[1], int(row[2] or 0), row[3]
    return StoreDetail(
        store_id=store_id, name=name, stream=stream, last_applied_seq=last,
        cursor=None if cursor is None else int(cursor), latest_change=latest_change(db),
        event_types=tuple(recent_event_types(db, store_id, stream, last)),
        dead_letters=tuple(dead_letters(db, include_closed=True, store_id=store_id, limit=10)),
        inspections=recent_inspections(db, store_id),
    )  # fmt: skip


def sequence_gap(store_last_seq: int | None, hq_applied: int) -> int | None:
    """Events the store has written that HQ has not applied yet (None: the store has not said)."""
    if store_last_seq is None:
        return None
    return max(0, store_last_seq - hq_applied)
