"""Keeping the analytics tables current: a full pass on demand, and an incremental fold of what is new.

Incremental (the scheduled job, `tenpo cloud analytics refresh`), in one transaction:

1. store sales and refunds applied since the sales watermark (``sales.applied_at``, minus an overlap
   of ``OVERLAP_S`` for transactions that committed late) and not folded yet;
2. imported orders (re)imported since the orders watermark (``member_orders.imported_at``): an order
   imported again may have changed, so its old row is taken out and the new one put in;
3. member merges and unmerges since the merge watermark: the purchases of both members are
   attributed again to whoever is their golden member now.

A changed purchase moves the counts of its own SKUs and pairs (its scopes: the chain, its store or
channel) and the row of its member(s), recomputed from that member's purchases; nothing else is
read or written. ``full`` rebuilds every table from the source tables; both give the same rows.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import chain, combinations
from typing import Any

from tenpo.cloud.db import Central

from . import bulk, tables
from .config import AnalyticsConfig
from .model import MemberTotals, Purchase, accumulate, finish, member_totals
from .source import read_all, read_orders, read_sales

log = logging.getLogger(__name__)
OVERLAP_S = 300.0
WATERMARKS = ("sales", "orders", "merges", "undone")
BATCH = 5000
_TABLES = ("analytics_purchases", "analytics_members", "analytics_items", "analytics_pairs", "analytics_scopes",
           "analytics_state")  # fmt: skip


@dataclass(slots=True)
class RefreshReport:
    mode: str
    purchases: int = 0  # purchases added, changed or removed
    members: int = 0  # member rows recomputed
    pairs: int = 0  # pair counts moved
    seconds: float = 0.0
    touched: set[str] = field(default_factory=set)  # members whose purchases changed

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("touched")
        return data


def count_deltas(purchase: Purchase, sign: int, items: dict[tuple[str, str], int],
                 pairs: dict[tuple[str, str, str], int], scopes: dict[str, int]) -> None:
    """What one purchase adds to (sign 1) or takes from (sign -1) the basket counts: purchases and SKUs
    in the chain and in its own scope (store or channel), SKU pairs chain-wide (a store's pairs are
    counted from its purchases when asked: kept for 20 stores they would be 20 times the rows)."""
    if not purchase.is_sale or not purchase.items:
        return
    skus = sorted(purchase.items)
    for scope in (tables.CHAIN, purchase.scope):
        scopes[scope] = scopes.get(scope, 0) + sign
        for sku in skus:
            items[(scope, sku)] = items.get((scope, sku), 0) + sign
    chain = tables.CHAIN
    for i, a in enumerate(skus):
        for b in skus[i + 1 :]:
            pairs[(chain, a, b)] = pairs.get((chain, a, b), 0) + sign


class Tally:
    """What ``count_deltas`` adds up over a whole pass (sign 1), counted by C-level Counter updates: SKUs per
    scope and pairs per (a, b); the chain's figures are the sums over the scopes (one scope per purchase)."""

    def __init__(self) -> None:
        self.scopes: Counter[str] = Counter()
        self.items: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.pairs: Counter[tuple[str, str]] = Counter()

    def add(self, purchase: Purchase) -> None:
        if not purchase.is_sale or not purchase.items:
            return
        skus = sorted(purchase.items)
        self.scopes[purchase.scope] += 1
        self.items[purchase.scope].update(skus)
        if len(skus) > 1:
            self.pairs.update(combinations(skus, 2))

    def counts(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str, str], int], dict[str, int]]:
        """(items, pairs, scopes) keyed as ``count_deltas`` keys them."""
        chain: Counter[str] = Counter()
        items: dict[tuple[str, str], int] = {}
        for scope, counted in self.items.items():
            chain.update(counted)
            items.update(((scope, sku), n) for sku, n in counted.items())
        items.update(((tables.CHAIN, sku), n) for sku, n in chain.items())
        scopes = dict(self.scopes)
        if scopes:
            scopes[tables.CHAIN] = sum(self.scopes.values())
        return items, {(tables.CHAIN, a, b): n for (a, b), n in self.pairs.items()}, scopes


REFRESH_LOCK = 0x7E4E0A12  # PostgreSQL: one refresh at a time across aggregators and commands


def _serialise(db: Central) -> None:
    """Two refreshes at once would both fold the same new sales: the second waits for the first to commit
    and then sees its rows (PostgreSQL: a transaction-level advisory lock; SQLite: BEGIN IMMEDIATE already)."""
    if db.dialect == "postgresql":
        db.execute("SELECT pg_advisory_xact_lock(?)", (REFRESH_LOCK,))


def _watermarks(db: Central) -> dict[str, str]:
    """How far the sources go now (one round trip)."""
    row = db.one("SELECT (SELECT max(applied_at) FROM sales), (SELECT max(imported_at) FROM member_orders),"
                 " (SELECT max(id) FROM member_merges), (SELECT max(undone_at) FROM member_merges)")  # fmt: skip
    values = row if row is not None else (None, None, None, None)
    return {name: str(value if value is not None else 0) for name, value in zip(WATERMARKS, values)}


def _save_watermarks(db: Central, marks: dict[str, str]) -> None:
    db.executemany("INSERT INTO analytics_state(name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                   " SET value = excluded.value", sorted(marks.items()))  # fmt: skip


def full_refresh(db: Central, config: AnalyticsConfig) -> RefreshReport:
    """Every analytics table rebuilt from sales and orders."""
    started = time.perf_counter()
    report = RefreshReport("full")
    with db.transaction():
        _serialise(db)
        for table in _TABLES:  # TRUNCATE on PostgreSQL: transactional there, and no dead rows to vacuum
            db.execute(f"TRUNCATE {table}" if db.dialect == "postgresql" else f"DELETE FROM {table}")
        marks = _watermarks(db)
        if db.dialect == "postgresql":
            _full_postgresql(db, config, report)
            _save_watermarks(db, marks)
            report.seconds = round(time.perf_counter() - started, 3)
            return report
        for name in bulk.INDEXES:  # built again after the load: one sort instead of a B-tree insert per row
            db.execute(f"DROP INDEX IF EXISTS {name}")
        acc: dict[str, list[Any]] = {}
        tally = Tally()
        batch: list[Purchase] = []
        for p in read_all(db, config):
            batch.append(p)
            if len(batch) >= BATCH:
                tables.insert_purchases(db, batch)
                batch.clear()
            report.purchases += 1
            tally.add(p)
            accumulate(acc, p)
        tables.insert_purchases(db, batch)
        rows = finish(acc)
        tables.insert_members(db, rows)
        items, pairs, scopes = tally.counts()
        tables.write_counts(db, items, pairs, scopes)
        for statement in bulk.INDEXES.values():
            db.execute(statement)
        _save_watermarks(db, marks)
        report.members, report.pairs = len(rows), len(pairs)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _full_postgresql(db: Central, config: AnalyticsConfig, report: RefreshReport) -> None:
    """Sales of the standard shape in SQL; the others and every order through the same Python reading."""
    bulk.drop_indexes(db)
    odd = bulk.load_sales(db)
    batch: list[Purchase] = []
    others = (p for part in tables.chunks(odd, 300)
              for p in read_sales(db, bulk.keyed(len(part)), [v for key in part for v in key], stream=False))  # fmt: skip
    for p in chain(others, (p for _key, p in read_orders(db, config) if p is not None)):
        batch.append(p)
        if len(batch) >= BATCH:
            tables.insert_purchases(db, batch)
            batch.clear()
    tables.insert_purchases(db, batch)
    bulk.derive(db)
    report.purchases = int(db.scalar("SELECT count(*) FROM analytics_purchases"))
    report.members = int(db.scalar("SELECT count(*) FROM analytics_members"))
    report.pairs = int(db.scalar("SELECT count(*) FROM analytics_pairs"))


def incremental_refresh(db: Central, config: AnalyticsConfig) -> RefreshReport:
    """Fold in what changed since the watermarks (see the module doc)."""
    started = time.perf_counter()
    report = RefreshReport("incremental")
    with db.transaction():
        _serialise(db)
        saved = dict(db.all("SELECT name, value FROM analytics_state"))
        marks = {name: str(saved.get(name, "0")) for name in WATERMARKS}
        current = _watermarks(db)
        changed: dict[str, Purchase | None] = {}
        if float(current["sales"]) > float(marks["sales"]) - OVERLAP_S:
            since = float(marks["sales"]) - OVERLAP_S
            fresh = {p.purchase_id: p for p in read_sales(db, "s.applied_at > ?", (since,), stream=False)}
            known = tables.purchases_by_id(db, fresh)
            changed.update({pid: p for pid, p in fresh.items() if pid not in known})
        if float(current["orders"]) > float(marks["orders"]) - OVERLAP_S:
            since = float(marks["orders"]) - OVERLAP_S
            changed.update(read_orders(db, config, "o.imported_at > ?", (since,), stream=False))
        merged = _merged_members(db, marks)
        if merged:
            ids = sorted(merged)
            for part in tables.chunks(ids):
                m = tables.marks(part)
                where = f"s.member_id IN ({m}) OR s.member_id IN (SELECT alias FROM member_aliases WHERE member_id IN ({m}))"
                for p in read_sales(db, where, (*part, *part)):
                    changed.setdefault(p.purchase_id, p)
                for pid, op in read_orders(db, config, f"ms.member_id IN ({m})", part):
                    changed.setdefault(pid, op)
            for customer_rows in tables.purchases_of(db, ids).values():  # attributed before: re-read them too
                for p in customer_rows:
                    if p.purchase_id not in changed and p.purchase_id.startswith("store:"):
                        changed.update({q.purchase_id: q for q in _reread_sale(db, p)})
        apply_changes(db, changed, report)
        _save_watermarks(db, current)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _reread_sale(db: Central, p: Purchase) -> Iterable[Purchase]:
    _store, store_id, rest = p.purchase_id.split(":", 2)
    return [q for q in read_sales(db, "s.store_id = ? AND s.stream || ':' || s.receipt_no = ?", (store_id, rest))]


def _merged_members(db: Central, marks: dict[str, str]) -> set[str]:
    """Both members of every merge made or undone since the watermarks."""
    rows = db.all("SELECT winner, loser FROM member_merges WHERE id > ? OR undone_at > ?",
                  (int(float(marks["merges"])), float(marks["undone"])))  # fmt: skip
    return {m for row in rows for m in row if m}


def apply_changes(db: Central, changed: dict[str, Purchase | None], report: RefreshReport) -> None:
    """Replace the rows of ``changed`` (None: the purchase no longer counts); move counts and member rows."""
    if not changed:
        return
    old = tables.purchases_by_id(db, changed)
    items: dict[tuple[str, str], int] = {}
    pairs: dict[tuple[str, str, str], int] = {}
    scopes: dict[str, int] = {}
    replaced: list[str] = []
    added: list[Purchase] = []
    for pid, new in changed.items():
        before = old.get(pid)
        if before == new:
            continue
        report.purchases += 1
        if before is not None:
            replaced.append(pid)
            count_deltas(before, -1, items, pairs, scopes)
            if before.customer:
                report.touched.add(before.customer)
        if new is not None:
            added.append(new)
            count_deltas(new, 1, items, pairs, scopes)
            if new.customer:
                report.touched.add(new.customer)
    tables.delete_purchases(db, replaced)
    tables.insert_purchases(db, added)
    tables.add_counts(db, items, pairs, scopes)
    report.pairs = sum(1 for n in pairs.values() if n)
    recompute_members(db, report.touched)
    report.members = len(report.touched)


def recompute_members(db: Central, customers: Iterable[str]) -> list[MemberTotals]:
    wanted = sorted(set(customers))
    found = tables.purchases_of(db, wanted)
    totals = [t for c in wanted if (t := member_totals(c, found.get(c, []))) is not None]
    tables.replace_members(db, wanted, totals)
    return totals


def table_rows(db: Central) -> dict[str, Sequence[Any]]:
    """Every analytics table's rows, sorted (for comparing a full pass with the incremental one)."""
    return {t: sorted(db.all(f"SELECT * FROM {t}"), key=repr) for t in _TABLES if t != "analytics_state"}
