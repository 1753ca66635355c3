"""Recommendations per member at HQ, and the ``member.recommendations`` change that carries them to
every store (docs/protocol.md) so the clerk's member profile shows them offline.

A member's recommendations are computed again when their purchases change (the incremental refresh
names them) and, for everyone else, in rolling batches of the oldest (``recommend.batch`` per run), so
rules that moved reach every member in turn. A change is recorded only when the list differs.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from typing import Any

from tenpo.cloud.changes import record_changes
from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple
from tenpo.shared.errors import UserError
from tenpo.shared.ids import is_id

from . import tables
from .config import AnalyticsConfig
from .model import Purchase, today_jst
from .recommend import Recommendation, recommend

KIND = "member.recommendations"
BEST_SELLERS = 50


def _home_scope(db: Central, customer: str, history: list[Purchase]) -> str:
    home = db.scalar("SELECT home_store FROM members WHERE member_id = ?", (customer,))
    if home:
        return f"store:{home}"
    stores = sorted((p.day, p.store_id) for p in history if p.store_id)
    return f"store:{stores[-1][1]}" if stores else tables.CHAIN


def recommend_for(db: Central, config: AnalyticsConfig, customers: Iterable[str],
                  as_of: dt.date | None = None) -> dict[str, list[Recommendation]]:  # fmt: skip
    """Recommendations of each member (none known: the best sellers of the chain)."""
    day = as_of or today_jst()
    wanted = sorted(set(customers))
    history = tables.purchases_of(db, wanted)
    skus = {sku for rows in history.values() for p in rows for sku in p.items}
    pairs = tables.pairs_with(db, tables.CHAIN, skus, config.recommend_min_pairs)
    counts = tables.item_counts(db, tables.CHAIN, skus)
    sellers: dict[str, list[str]] = {}
    found = {}
    for customer in wanted:
        rows = history.get(customer, [])
        scope = _home_scope(db, customer, rows)
        if scope not in sellers:
            sellers[scope] = tables.top_items(db, scope, BEST_SELLERS) or tables.top_items(db, tables.CHAIN, BEST_SELLERS)
        found[customer] = recommend(
            [(p.day, p.items) for p in rows if p.is_sale], day, pair_counts=pairs, item_counts=counts,
            best_sellers=sellers[scope], count=config.recommend_count, exclude_days=config.recommend_exclude_days,
            half_life_days=config.recommend_half_life_days, min_pairs=config.recommend_min_pairs)  # fmt: skip
    return found


def change_data(db: Central, customer: str, picks: list[Recommendation], as_of: dt.date) -> dict[str, Any]:
    names = dict(db.all(f"SELECT sku, name FROM products WHERE sku IN ({tables.marks(picks) or 'NULL'})",
                        [p.sku for p in picks])) if picks else {}  # fmt: skip
    return {"member_id": customer, "as_of": as_of.isoformat(), "version": 0,
            "items": [{"sku": p.sku, "name": (names.get(p.sku) or "")[:200] or None, "reason": p.reason[:128],
                       "score": p.score} for p in picks]}  # fmt: skip


def publish(db: Central, config: AnalyticsConfig, customers: Iterable[str], now: float | None = None,
            as_of: dt.date | None = None) -> int:
    """Compute, keep and send (as changes) the recommendations of ``customers`` that changed; how many were sent.
    Call inside a transaction."""
    when = time.time() if now is None else now
    day = as_of or today_jst()
    live = [c for c in sorted(set(customers)) if is_id(c)]
    erased = {c for part in tables.chunks(live) for (c,) in
              db.all(f"SELECT member_id FROM members WHERE erased = 1 AND member_id IN ({tables.marks(part)})", part)}
    live = [c for c in live if c not in erased]
    picks = recommend_for(db, config, live, day)
    before = {}
    for part in tables.chunks(live):
        sql = f"SELECT customer, items FROM analytics_recommendations WHERE customer IN ({tables.marks(part)})"
        before.update(dict(db.all(sql, part)))
    changes: list[ChangeTuple] = []
    for customer in live:
        skus = " ".join(p.sku for p in picks[customer])
        if before.get(customer) != skus:
            changes.append((KIND, customer, None, change_data(db, customer, picks[customer], day)))
        db.execute("INSERT INTO analytics_recommendations(customer, items, computed_at) VALUES (?, ?, ?)"
                   " ON CONFLICT (customer) DO UPDATE SET items = excluded.items, computed_at = excluded.computed_at",
                   (customer, skus, when))  # fmt: skip
    record_changes(db, changes, when)
    return len(changes)


def stale_members(db: Central, limit: int) -> list[str]:
    """Members whose recommendations are oldest (never computed first)."""
    if limit <= 0:
        return []
    rows = db.all("SELECT m.customer FROM analytics_members m LEFT JOIN analytics_recommendations r"
                  " ON r.customer = m.customer ORDER BY COALESCE(r.computed_at, 0), m.customer LIMIT ?", (limit,))  # fmt: skip
    return [r[0] for r in rows]


def member_recommendations(db: Central, config: AnalyticsConfig, member_id: str,
                           as_of: dt.date | None = None) -> dict[str, Any]:
    """What `tenpo cloud analytics recommend MEMBER_ID` shows (computed now, not sent)."""
    if not is_id(member_id):
        raise UserError(f"member {member_id!r} is not a valid id")
    golden = str(db.scalar("SELECT member_id FROM member_aliases WHERE alias = ?", (member_id,), member_id))
    known = db.scalar("SELECT erased FROM members WHERE member_id = ?", (golden,))
    if known is None and not tables.purchases_of(db, [golden]):
        raise UserError(f"member {member_id}: not known at HQ")
    if known == 1:
        raise UserError(f"member {member_id}: erased")
    day = as_of or today_jst()
    picks = recommend_for(db, config, [golden], day)[golden]
    data = change_data(db, golden, picks, day)
    sent = db.scalar("SELECT items FROM analytics_recommendations WHERE customer = ?", (golden,))
    return {**data, "sent": sent.split() if sent else None}

