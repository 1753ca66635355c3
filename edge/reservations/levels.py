"""A SKU's stock as reservations see it: ``available = on_hand - reserved`` (docs/channel.md).

On hand is this store's ledger; reserved what its confirmed and ready reservations hold. Apart from the
reservation moves (tenpo.edge.reservations.store) so that what else takes stock out, a transfer, can
leave held units alone without depending on them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

HOLDING = ("confirmed", "ready")  # states that hold units


def on_hand(conn: sqlite3.Connection, sku: str) -> int:
    row = conn.execute("SELECT coalesce(sum(delta), 0) FROM stock_ledger WHERE sku = ?", (sku,)).fetchone()
    return int(row[0])


def reserved(conn: sqlite3.Connection, sku: str) -> int:
    row = conn.execute("SELECT coalesce(sum(qty), 0) FROM reservations WHERE sku = ? AND state IN (?, ?)",
                       (sku, *HOLDING)).fetchone()  # fmt: skip
    return int(row[0])


def reserved_by_sku(conn: sqlite3.Connection, skus: Iterable[str] | None = None) -> dict[str, int]:
    rows = conn.execute("SELECT sku, sum(qty) FROM reservations WHERE state IN (?, ?) GROUP BY sku", HOLDING)
    wanted = None if skus is None else set(skus)
    return {sku: int(n) for sku, n in rows if wanted is None or sku in wanted}


def available(conn: sqlite3.Connection, sku: str) -> int:
    return on_hand(conn, sku) - reserved(conn, sku)
