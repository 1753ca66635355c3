"""Who has arrived: the rows the clerk terminal shows ("佐藤様がご来店").

Reads only the replica, so it works whether or not the agent is running. Erased members never
appear (their visits are deleted by the agent, and the join excludes them meanwhile).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from tenpo.edge import keystore
from tenpo.edge.membership import vault
from tenpo.edge.replica import points_balance


@dataclass(frozen=True, slots=True)
class LastPurchase:
    at: float
    total: int | None  # yen, when the sales table says
    ref: str | None  # receipt number or sale id


@dataclass(frozen=True, slots=True)
class Arrival:
    visit_id: str
    member_id: str
    name: str | None
    kana: str | None
    points: int
    arrived_at: float
    left_at: float | None  # None: still in the store
    dwell_s: float | None
    last_purchase: LastPurchase | None

    @property
    def present(self) -> bool:
        return self.left_at is None

    def as_json(self) -> dict[str, Any]:
        record = {name: getattr(self, name) for name in self.__slots__}
        purchase = self.last_purchase
        record["last_purchase"] = None if purchase is None else {"at": purchase.at, "total": purchase.total, "ref": purchase.ref}
        return record


def recent_arrivals(db: sqlite_utils.Database, limit: int = 20) -> list[Arrival]:
    """The latest member visits here, newest first, with the member's profile and points."""
    conn = db.conn
    rows = conn.execute(
        "SELECT v.visit_id, v.member_id, m.name, m.kana, m.points_hq, m.points_through, v.arrived_at, v.left_at,"
        " v.dwell_s FROM ble_visits v JOIN members m ON m.member_id = v.member_id"
        " WHERE m.erased = 0 ORDER BY v.arrived_at DESC, v.rowid DESC LIMIT ?",
        (limit,),
    ).fetchall()
    last_purchase = _last_purchase_reader(conn)
    codec = keystore.codec(conn) if rows else None
    return [
        Arrival(
            visit_id=visit_id, member_id=member_id,  # the name and reading are sealed at rest (issue 14)
            name=vault.open_value(codec, name, "name", member_id) if codec else None,
            kana=vault.open_value(codec, kana, "kana", member_id) if codec else None,
            points=points_balance(conn, member_id, points_hq, points_through),
            arrived_at=arrived_at, left_at=left_at, dwell_s=dwell_s,
            last_purchase=last_purchase(member_id) if last_purchase else None,
        )  # fmt: skip
        for visit_id, member_id, name, kana, points_hq, points_through, arrived_at, left_at, dwell_s in rows
    ]


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if not exists:
        return set()
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _first(columns: set[str], *names: str) -> str | None:
    return next((name for name in names if name in columns), None)


def _last_purchase_reader(conn: sqlite3.Connection) -> Any:
    """A lookup of a member's latest sale, if the checkout area's ``sales`` table is there.

    The checkout area builds that table in parallel with this one, so its columns are discovered,
    not assumed: a member column, a time column, and if present a total and a receipt number.
    """
    columns = _columns(conn, "sales")
    member = _first(columns, "member_id")
    when = _first(columns, "created_at", "sold_at", "at", "ts")
    if member is None or when is None:
        return None
    total = _first(columns, "total", "total_yen", "amount", "grand_total")
    ref = _first(columns, "receipt_no", "receipt", "sale_id", "id")
    only_sales = " AND kind = 'sale'" if "kind" in columns else ""  # a refund is not a purchase
    sql = (
        f"SELECT {when}, {total or 'NULL'}, {ref or 'NULL'} FROM sales WHERE {member} = ?{only_sales}"
        f" ORDER BY {when} DESC LIMIT 1"
    )

    def read(member_id: str) -> LastPurchase | None:
        row = conn.execute(sql, (member_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        at, amount, receipt = row
        return LastPurchase(
            at=float(at),
            total=int(amount) if isinstance(amount, (int, float)) else None,
            ref=None if receipt is None else str(receipt),
        )

    return read
