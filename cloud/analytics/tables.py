"""Reading and writing the analytics tables (migration 12): thin SQL adapters, no analysis here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from tenpo.cloud.db import Central

from .model import MemberTotals, Purchase

CHUNK = 900  # ids per IN (...): far below SQLite's 32,766 parameters, few round trips
CHAIN = "*"

PURCHASE_COLUMNS = "purchase_id, customer, channel, store_id, day, amount, is_sale, items"
MEMBER_COLUMNS = ("customer, first_day, first_purchase, first_channel, second_day, second_purchase, last_day,"
                  " frequency, monetary")  # fmt: skip


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


# ---------------------------------------------------------------------------- purchases


def purchase_row(p: Purchase) -> tuple[Any, ...]:
    return (p.purchase_id, p.customer, p.channel, p.store_id, p.day.isoformat(), p.amount, int(p.is_sale),
            " ".join(sorted(p.items)))  # fmt: skip


def purchase_of(row: Sequence[Any]) -> Purchase:
    pid, customer, channel, store_id, day, amount, is_sale, items = row
    return Purchase(pid, customer, channel, store_id, dt.date.fromisoformat(day), int(amount), bool(is_sale),
                    frozenset(items.split()) if items else frozenset())  # fmt: skip


def insert_purchases(db: Central, purchases: Sequence[Purchase]) -> None:
    db.executemany(f"INSERT INTO analytics_purchases({PURCHASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   [purchase_row(p) for p in purchases])  # fmt: skip


def delete_purchases(db: Central, ids: Sequence[str]) -> None:
    for part in chunks(list(ids)):
        db.execute(f"DELETE FROM analytics_purchases WHERE purchase_id IN ({marks(part)})", part)


def purchases_by_id(db: Central, ids: Iterable[str]) -> dict[str, Purchase]:
    found: dict[str, Purchase] = {}
    for part in chunks(sorted(set(ids))):
        for row in db.all(f"SELECT {PURCHASE_COLUMNS} FROM analytics_purchases WHERE purchase_id IN ({marks(part)})", part):
            found[row[0]] = purchase_of(row)
    return found


def purchases_of(db: Central, customers: Iterable[str]) -> dict[str, list[Purchase]]:
    found: dict[str, list[Purchase]] = {}
    for part in chunks(sorted(set(customers))):
        for row in db.all(f"SELECT {PURCHASE_COLUMNS} FROM analytics_purchases WHERE customer IN ({marks(part)})", part):
            p = purchase_of(row)
            found.setdefault(str(p.customer), []).append(p)
    return found


def iter_purchases(db: Central, as_of: dt.date | None = None) -> Iterator[Purchase]:
    where, params = ("WHERE day <= ?", (as_of.isoformat(),)) if as_of else ("", ())
    cursor = db.execute(f"SELECT {PURCHASE_COLUMNS} FROM analytics_purchases {where}", params)
    while rows := cursor.fetchmany(20_000):
        for row in rows:
            yield purchase_of(row)


# ---------------------------------------------------------------------------- members


def member_row(t: MemberTotals) -> tuple[Any, ...]:
    return (t.customer, t.first_day.isoformat(), t.first_purchase, t.first_channel,
            t.second_day.isoformat() if t.second_day else None, t.second_purchase, t.last_day.isoformat(),
            t.frequency, t.monetary)  # fmt: skip


def member_of(row: Sequence[Any]) -> MemberTotals:
    c, first, first_id, channel, second, second_id, last, frequency, monetary = row
    return MemberTotals(c, dt.date.fromisoformat(first), first_id, channel, dt.date.fromisoformat(second) if second else None,
                        second_id, dt.date.fromisoformat(last), int(frequency), int(monetary))  # fmt: skip


def replace_members(db: Central, customers: Iterable[str], totals: Sequence[MemberTotals]) -> None:
    """The rows of ``customers`` become ``totals`` (a member without a sale any more loses its row)."""
    for part in chunks(sorted(set(customers))):
        db.execute(f"DELETE FROM analytics_members WHERE customer IN ({marks(part)})", part)
    insert_members(db, totals)


def insert_members(db: Central, totals: Sequence[MemberTotals]) -> None:
    db.executemany(f"INSERT INTO analytics_members({MEMBER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [member_row(t) for t in totals])  # fmt: skip


def all_members(db: Central) -> list[MemberTotals]:
    return [member_of(r) for r in db.all(f"SELECT {MEMBER_COLUMNS} FROM analytics_members")]


# ---------------------------------------------------------------------------- basket counts


def add_counts(db: Central, items: dict[tuple[str, str], int], pairs: dict[tuple[str, str, str], int],
               scopes: dict[str, int]) -> None:
    """Add deltas (keyed (scope, sku), (scope, a, b), scope); rows that reach 0 are deleted."""
    _upsert(db, "analytics_items", ("scope", "sku"), [(*k, n) for k, n in items.items() if n])
    _upsert(db, "analytics_pairs", ("scope", "a", "b"), [(*k, n) for k, n in pairs.items() if n])
    _upsert(db, "analytics_scopes", ("scope",), [(k, n) for k, n in scopes.items() if n], "purchases")
    if any(n < 0 for n in items.values()) or any(n < 0 for n in pairs.values()):
        db.execute("DELETE FROM analytics_items WHERE n <= 0")
        db.execute("DELETE FROM analytics_pairs WHERE n <= 0")


def _upsert(db: Central, table: str, key: tuple[str, ...], rows: list[tuple[Any, ...]], value: str = "n") -> None:
    if not rows:
        return
    columns = ", ".join((*key, value))
    conflict = f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {value} = {table}.{value} + excluded.{value}"
    if db.dialect == "postgresql":  # one statement for the whole batch: arrays, not a round trip per row
        arrays = [list(column) for column in zip(*rows)]
        types = ", ".join(["%s::text[]"] * len(key) + ["%s::bigint[]"])
        db.conn.execute(f"INSERT INTO {table}({columns}) SELECT * FROM unnest({types}) {conflict}", arrays)
        return
    db.executemany(f"INSERT INTO {table}({columns}) VALUES ({marks(rows[0])}) {conflict}", rows)


def write_counts(db: Central, items: dict[tuple[str, str], int], pairs: dict[tuple[str, str, str], int],
                 scopes: dict[str, int]) -> None:
    """Fresh tables (a full refresh): plain inserts in key order (B-tree appends), COPY on PostgreSQL."""
    db.executemany("INSERT INTO analytics_items(scope, sku, n) VALUES (?, ?, ?)", sorted((*k, n) for k, n in items.items() if n))
    rows = sorted((*k, n) for k, n in pairs.items() if n)
    for part in chunks(rows, 200_000):
        db.executemany("INSERT INTO analytics_pairs(scope, a, b, n) VALUES (?, ?, ?, ?)", part)
    db.executemany("INSERT INTO analytics_scopes(scope, purchases) VALUES (?, ?)", [(k, n) for k, n in scopes.items() if n])


def counts(db: Central, scope: str) -> tuple[int, dict[str, int], dict[tuple[str, str], int]]:
    """(purchases, per SKU, per pair) of one scope."""
    total = int(db.scalar("SELECT purchases FROM analytics_scopes WHERE scope = ?", (scope,), 0))
    items = {sku: int(n) for sku, n in db.all("SELECT sku, n FROM analytics_items WHERE scope = ?", (scope,))}
    pairs = {(a, b): int(n) for a, b, n in db.all("SELECT a, b, n FROM analytics_pairs WHERE scope = ?", (scope,))}
    return total, items, pairs


def frequent_pairs(db: Central, scope: str, min_count: int) -> dict[tuple[str, str], int]:
    """Pairs seen at least ``min_count`` times (what a minimum support keeps), without reading the rest."""
    rows = db.all("SELECT a, b, n FROM analytics_pairs WHERE scope = ? AND n >= ?", (scope, min_count))
    return {(a, b): int(n) for a, b, n in rows}


def pairs_with(db: Central, scope: str, skus: Iterable[str], min_count: int) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for part in chunks(sorted(set(skus))):
        for a, b, n in db.all(f"SELECT a, b, n FROM analytics_pairs WHERE scope = ? AND n >= ? AND (a IN ({marks(part)})"
                              f" OR b IN ({marks(part)}))", (scope, min_count, *part, *part)):  # fmt: skip
            found[(a, b)] = int(n)
    return found


def item_counts(db: Central, scope: str, skus: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for part in chunks(sorted(set(skus))):
        for sku, n in db.all(f"SELECT sku, n FROM analytics_items WHERE scope = ? AND sku IN ({marks(part)})", (scope, *part)):
            found[sku] = int(n)
    return found


def top_items(db: Central, scope: str, limit: int) -> list[str]:
    return [r[0] for r in db.all("SELECT sku FROM analytics_items WHERE scope = ? AND n > 0 ORDER BY n DESC, sku LIMIT ?",
                                 (scope, limit))]  # fmt: skip
