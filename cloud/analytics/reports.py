"""The figures a manager asks for, read from the analytics tables and computed by the pure modules."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from tenpo.cloud.db import Central
from tenpo.shared.errors import UserError

from . import tables
from .basket import BasketCounts, Rule, rules
from .config import AnalyticsConfig
from .model import MemberTotals, today_jst, totals_by_member
from .retention import CohortRow, F2Row, cohorts, f2_conversion, ltv_rows, repeat_rate
from .rfm import RfmInput, RfmRow, rfm_rows

_LIVE = "NOT EXISTS (SELECT 1 FROM members g WHERE g.member_id = {col} AND g.erased = 1)"


def scope_of(store: str | None) -> str:
    return f"store:{store}" if store else tables.CHAIN


def _latest_day(db: Central) -> dt.date | None:
    day = db.scalar("SELECT max(day) FROM analytics_purchases")
    return dt.date.fromisoformat(day) if day else None


def rfm_inputs(db: Central, as_of: dt.date, store: str | None = None) -> list[RfmInput]:
    """Per live member with a purchase up to ``as_of`` (at ``store`` only, if given)."""
    latest = _latest_day(db)
    if store is None and (latest is None or latest <= as_of):  # the incremental table is exact here
        rows = db.all(f"SELECT customer, last_day, frequency, monetary FROM analytics_members m"
                      f" WHERE {_LIVE.format(col='m.customer')}")  # fmt: skip
    else:
        where, params = "customer IS NOT NULL AND day <= ?", [as_of.isoformat()]
        if store is not None:
            where, params = where + " AND store_id = ?", [*params, store]
        rows = db.all(
            "SELECT customer, max(CASE WHEN is_sale = 1 THEN day END), sum(is_sale), sum(amount)"
            f" FROM analytics_purchases p WHERE {where} AND {_LIVE.format(col='p.customer')}"
            " GROUP BY customer HAVING sum(is_sale) > 0", params)  # fmt: skip
    return [RfmInput(c, dt.date.fromisoformat(last), int(f), int(m)) for c, last, f, m in rows]


def rfm(db: Central, config: AnalyticsConfig, as_of: dt.date | None = None, store: str | None = None) -> list[RfmRow]:
    day = as_of or today_jst()
    return rfm_rows(rfm_inputs(db, day, store), day, config)


def basket(db: Central, config: AnalyticsConfig, min_support: float | None = None,
           store: str | None = None) -> tuple[int, list[Rule]]:
    """(purchases in the scope, rules). Chain-wide from the kept pair counts (only pairs that can reach
    the support are read); one store's from its purchases, counted now."""
    support = config.min_support if min_support is None else min_support
    if not 0 <= support <= 1:
        raise UserError(f"--min-support {support}: must be a fraction from 0 to 1")
    if store is not None:
        counts = BasketCounts()
        for (items,) in db.all("SELECT items FROM analytics_purchases WHERE store_id = ? AND is_sale = 1 AND items <> ''",
                               (store,)):  # fmt: skip
            counts.add(items.split())
        return counts.purchases, rules(counts.purchases, counts.items, counts.pairs, support, config.min_confidence)
    total = int(db.scalar("SELECT purchases FROM analytics_scopes WHERE scope = ?", (tables.CHAIN,), 0))
    if total == 0:
        return 0, []
    least = max(1, math.ceil(support * total - 1e-9))
    pairs = tables.frequent_pairs(db, tables.CHAIN, least)
    items = tables.item_counts(db, tables.CHAIN, {sku for pair in pairs for sku in pair})
    return total, rules(total, items, pairs, support, config.min_confidence)


def member_totals_at(db: Central, as_of: dt.date) -> dict[str, MemberTotals]:
    """Live members' totals at ``as_of``: the incremental table when it is exact, else from the purchases."""
    latest = _latest_day(db)
    if latest is None or latest <= as_of:
        found = {t.customer: t for t in tables.all_members(db)}
    else:
        found = totals_by_member(tables.iter_purchases(db, as_of), as_of)
    erased = {r[0] for r in db.all("SELECT member_id FROM members WHERE erased = 1")}
    return {c: t for c, t in found.items() if c not in erased}


def retention(db: Central, config: AnalyticsConfig, as_of: dt.date | None = None) -> dict[str, Any]:
    day = as_of or today_jst()
    totals = member_totals_at(db, day)
    rows: list[CohortRow] = cohorts(tables.iter_purchases(db, day), totals, day)
    f2: list[F2Row] = f2_conversion(totals.values(), config.f2_days)
    return {"as_of": day.isoformat(), "f2_days": config.f2_days, "repeat": repeat_rate(totals.values()),
            "f2": [r.as_json() for r in f2], "cohorts": [r.as_json() for r in rows]}  # fmt: skip


def ltv(db: Central, as_of: dt.date | None = None) -> dict[str, Any]:
    day = as_of or today_jst()
    totals = member_totals_at(db, day)
    members = ltv_rows(totals.values())
    by_cohort: dict[str, list[int]] = {}
    for row in members:
        by_cohort.setdefault(row["cohort"], []).append(row["ltv"])
    return {"as_of": day.isoformat(), "members": members,
            "cohorts": [{"cohort": c, "members": len(v), "ltv_mean": round(sum(v) / len(v), 2)}
                        for c, v in sorted(by_cohort.items())]}  # fmt: skip
