"""The one writer of each store ledger: a ledger row and the outbox event that reports it, together.

Every stock movement (sale, return, receipt, adjustment, HQ's correction, a bootstrap's opening
balance) and every points entry goes through here, inside the caller's transaction, so a row is never
written without its event (or, for entries HQ already holds, never with one).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from tenpo.edge.outbox import append
from tenpo.shared.events import PointsEntry, PointsKind, StockAdjusted, StockMoved

LOCATION = "floor"


def post_stock(conn: sqlite3.Connection, *, sku: str, delta: int, reason: str, ref: str | None = None,
               location: str = LOCATION, adjustment: bool = False, report: bool = True,
               now: float | None = None) -> int | None:  # fmt: skip
    """Append a stock ledger row; with ``report`` also its ``stock.moved`` event (``stock.adjusted`` for
    a manual ``adjustment``), whose seq the row keeps and which is returned. ``report=False`` is for
    entries HQ made or already has (corrections, opening balances): no event, no seq."""
    seq: int | None = None
    if report:
        event = StockAdjusted if adjustment else StockMoved
        seq = append(conn, event(sku=sku, delta=delta, reason=reason, location=location, ref=ref))
    conn.execute(
        "INSERT INTO stock_ledger(sku, location, delta, reason, ref, store_seq, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (sku, location, delta, reason, ref, seq, time.time() if now is None else now),
    )
    return seq


def post_points(conn: sqlite3.Connection, *, member_id: str, delta: int, kind: PointsKind, ref: str | None = None,
                now: float | None = None, loyalty: Mapping[str, Any] | None = None) -> int:  # fmt: skip
    """Append a points ledger row and its ``points.entry`` event; returns the event's seq. ``loyalty``: an
    accrual's rank, multiplier_pct and base (issue 17, docs/loyalty.md), carried in the event for HQ."""
    seq = append(conn, PointsEntry(member_id=member_id, delta=delta, kind=kind, ref=ref, **(loyalty or {})))
    conn.execute(
        "INSERT INTO points_ledger(member_id, delta, kind, ref, store_seq, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (member_id, delta, kind, ref, seq, time.time() if now is None else now),
    )
    return seq
