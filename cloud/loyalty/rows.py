"""Loyalty rows at HQ read and written in bulk, for the jobs in tenpo.cloud.loyalty.store: a member's ledger
entries as the lot rules see them, a chunk's entries and held loyalty rows in one query each, and an upsert
sent as few statements as the database allows."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from datetime import date
from typing import Any

from tenpo.cloud.db import Central
from tenpo.shared.loyalty import Entry

# Each ledger row with the time it happened: a store's entry by its event time (loyalty_points_meta),
# every other row (HQ's, a channel import's, one applied before migration 13) by when HQ wrote it.
ENTRY_ROWS = (
    "SELECT l.member_id, l.id, l.delta, l.kind, coalesce(m.at, l.created_at), m.expires_on, l.store_id FROM points_ledger l"
    " LEFT JOIN loyalty_points_meta m ON m.store_id = l.store_id AND m.stream = l.stream AND m.store_seq = l.store_seq"
)
Held = tuple[str, int, int, str]  # what a store holds of a member: rank, multiplier_pct, spend, lots (the JSON sent)


def member_entries(db: Central, member_id: str) -> list[Entry]:
    rows = db.all(ENTRY_ROWS + " WHERE l.member_id = ?", (member_id,))
    return [Entry(float(at), int(delta), str(kind), date.fromisoformat(until) if until else None, int(key))
            for _member, key, delta, kind, at, until, _store in rows]  # fmt: skip


def chunk_entries(db: Central, members: list[str]) -> dict[str, tuple[list[Entry], set[str]]]:
    """The entries of these members and the stores that wrote them, in one query (a chunk of a job)."""
    found: dict[str, tuple[list[Entry], set[str]]] = {}
    if not members:
        return found
    marks = ", ".join("?" for _ in members)
    for member_id, key, delta, kind, at, until, store in db.all(ENTRY_ROWS + f" WHERE l.member_id IN ({marks})", members):
        held = found.get(member_id)
        if held is None:
            held = found[member_id] = ([], set())
        held[0].append(_entry(Entry, (float(at), delta, kind, _iso_date(until) if until else None, key)))
        held[1].add(store)
    return found


_entry = tuple.__new__  # an Entry from its fields, without NamedTuple's keyword handling (the job reads millions)


@functools.lru_cache(maxsize=4096)
def _iso_date(text: str) -> date:
    return date.fromisoformat(text)


def held_rows(db: Central, members: list[str]) -> dict[str, tuple[Held, str | None]]:
    """What the stores hold of these members (lots as the JSON sent) and each one's soonest lot end."""
    if not members:
        return {}
    marks = ", ".join("?" for _ in members)
    return {str(m): ((str(r), int(p), int(s), str(lots)), end) for m, r, p, s, lots, end in db.all(
        f"SELECT member_id, rank, multiplier_pct, spend, lots, next_end FROM loyalty_members WHERE member_id IN ({marks})",
        members)}  # fmt: skip


def lots_differ(lots: list[dict[str, Any]], text: str, sent: str) -> bool:
    """Whether ``lots`` (``text`` as JSON) differ from the JSON last sent (equal lots are almost always equal
    text: the sender wrote it the same way)."""
    return text != sent and lots != json.loads(sent)


def upsert_distinct(db: Central, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """An upsert of rows with distinct keys (first column): on PostgreSQL as multi-row statements, one round
    trip per few thousand rows rather than one per row (Central.executemany sends an upsert row by row, as
    its rows may repeat a key)."""
    if not rows:
        return
    if db.dialect == "sqlite" or len({row[0] for row in rows}) != len(rows):
        db.executemany(sql, rows)
        return
    head, _values, tail = sql.partition(" VALUES ")
    one = "(" + ", ".join("?" for _ in rows[0]) + ")"
    step = 60_000 // len(rows[0])  # PostgreSQL takes at most 65,535 parameters a statement
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        db.execute(f"{head} VALUES {', '.join(one for _ in part)} {tail.partition(') ')[2]}",
                   [value for row in part for value in row])  # fmt: skip


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
