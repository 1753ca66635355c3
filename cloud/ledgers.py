"""The one writer of each HQ ledger row: a store's event, HQ's own correction and an import all go
through these, so the ledgers' columns and their meaning are defined once.

Each returns the statement and its parameters; the caller runs it on the plan (``plan.add``), on the
database (``db.execute``), or with ``RETURNING id`` appended when it needs the new row's id.
"""

from __future__ import annotations

from typing import Any

INSERT_STOCK = (
    "INSERT INTO stock_ledger(store_id, stream, sku, location, delta, reason, ref, store_seq, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_POINTS = (
    "INSERT INTO points_ledger(member_id, delta, kind, ref, store_id, stream, store_seq, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def stock_entry(*, store_id: str, stream: str, sku: str, delta: int, reason: str, ref: str | None, store_seq: int,
                at: float, location: str = "floor") -> tuple[str, tuple[Any, ...]]:  # fmt: skip
    """One stock movement of ``store_id``; ``stream``/``store_seq`` say which event (or HQ entry) made it."""
    return INSERT_STOCK, (store_id, stream, sku, location, delta, reason, ref, store_seq, at)


def points_entry(*, member_id: str, delta: int, kind: str, ref: str | None, store_id: str, stream: str,
                 store_seq: int, at: float) -> tuple[str, tuple[Any, ...]]:  # fmt: skip
    """One change of a member's points balance, from a store, a channel import or HQ itself."""
    return INSERT_POINTS, (member_id, delta, kind, ref, store_id, stream, store_seq, at)
