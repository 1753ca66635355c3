"""Issue 17 §10: the full rebuild's fast paths count what the plain definition counts. Baskets of every
size from 1 to 14 SKUs (the PostgreSQL rebuild pairs up to 8 through a fixed list of positions, larger ones
otherwise; SQLite's pass counts with Counter), SKUs rung up twice in one sale, and times in every shape
the stores or a hand-made import could write (JST, UTC, another offset, fractions of a second, no offset,
a leap day, nothing readable). Expected figures come from the generated baskets, not from the code."""

from __future__ import annotations

import random
from collections import Counter
from itertools import combinations

from tenpo.cloud.analytics.config import AnalyticsConfig
from tenpo.cloud.analytics.refresh import full_refresh, incremental_refresh, table_rows
from tenpo.cloud.db import Central
from tests.test_analytics_data import NOW, SKUS, STORES, Generated, add_sale

TIMES = {  # as written -> the JST day it falls on
    "2026-05-01T10:00:00+09:00": "2026-05-01",
    "2026-05-01T23:30:00+00:00": "2026-05-02",
    "2026-05-01T14:00:00Z": "2026-05-01",
    "2026-04-30T20:15:00-05:00": "2026-05-01",
    "2026-05-02T09:00:00.250+09:00": "2026-05-02",
    "2026-05-02T16:00:00": "2026-05-03",  # no offset: taken as UTC
    "2024-02-29T20:00:00-05:00": "2024-03-01",  # a leap day west of UTC
}


def _sell(db: Central) -> list[tuple[set[str], str]]:
    """Three sales of each basket size from 1 to 14, some with a SKU on two lines, and one unreadable time."""
    g, rng, sold = Generated(), random.Random(10), []
    times = list(TIMES)
    baskets = [rng.sample(SKUS, size) for size in range(1, 15) for _ in range(3)]
    baskets += [[*b, b[0]] for b in baskets[::5]]  # a SKU on two lines of one sale counts once
    with db.transaction():
        for n, basket in enumerate(baskets):
            at = times[n % len(times)]
            add_sale(db, g, rng, f"T-{n % 9:04d}", at, STORES[n % len(STORES)], NOW, basket)
            sold.append((set(basket), TIMES[at]))
        add_sale(db, g, rng, "T-0001", "sometime in May", "S001", NOW, ["SKU01", "SKU02"])  # left out, logged
    return sold


def test_full_rebuild_counts_every_pair_of_baskets_of_any_size_and_any_time(central_url: str) -> None:
    db = Central(central_url)
    config = AnalyticsConfig()
    full_refresh(db, config)  # empty: the sales below are folded in by the incremental refresh first
    sold = _sell(db)
    incremental_refresh(db, config)
    folded = table_rows(db)
    report = full_refresh(db, config)
    rows = table_rows(db)
    db.close()
    assert rows == folded, "the rebuild and the incremental fold write the same rows"
    assert any(len(skus) > 8 for skus, _day in sold), "the large-basket path is exercised"
    pairs = Counter(pair for skus, _day in sold for pair in combinations(sorted(skus), 2))
    assert {(a, b): n for _scope, a, b, n in rows["analytics_pairs"]} == pairs
    items = Counter(sku for skus, _day in sold for sku in skus)
    assert {sku: n for scope, sku, n in rows["analytics_items"] if scope == "*"} == items
    assert dict(rows["analytics_scopes"])["*"] == len(sold) == report.purchases
    assert Counter(r[4] for r in rows["analytics_purchases"]) == Counter(day for _skus, day in sold)


def test_postgresql_analytics_keys_are_compared_byte_wise(postgres_url: str) -> None:
    """Migration 22: the keys the rebuild sorts and indexes use the "C" collation (bytes, as Python orders
    them), whatever the database's locale."""
    db = Central(postgres_url)
    columns = db.all("SELECT table_name, column_name, collation_name FROM information_schema.columns"
                     " WHERE table_name IN ('analytics_purchases', 'analytics_members', 'analytics_items',"
                     " 'analytics_pairs', 'analytics_scopes') AND data_type = 'text'")  # fmt: skip
    keys = {(t, c) for t, c, collation in columns if collation == "C"}
    skus = ["b", "B", "a", "Z", "é", "_x", "10", "9"]
    with db.transaction():
        db.executemany("INSERT INTO analytics_items(scope, sku, n) VALUES ('*', ?, 1)", [(s,) for s in skus])
    ordered = [sku for (sku,) in db.all("SELECT sku FROM analytics_items WHERE scope = '*' ORDER BY sku")]
    db.close()
    assert keys == {("analytics_purchases", "purchase_id"), ("analytics_purchases", "customer"),
                    ("analytics_purchases", "day"), ("analytics_members", "customer"), ("analytics_items", "scope"),
                    ("analytics_items", "sku"), ("analytics_pairs", "scope"), ("analytics_pairs", "a"),
                    ("analytics_pairs", "b"), ("analytics_scopes", "scope")}  # fmt: skip
    assert ordered == sorted(skus)


def test_postgresql_fast_shape_test_agrees_with_the_regex(postgres_url: str) -> None:
    """The stage's test of the stores' own time shape (no regex) never calls a time standard that the regex
    does not, and every time the regex accepts still passes the stage's combined test."""
    from tenpo.cloud.analytics import bulk

    base = "2026-05-01T10:00:00+09:00"
    times = {base[:i] + ch + base[i + 1 :] for i in range(len(base)) for ch in "0123456789-T:+Z.aé٣ "}
    years, hours, seconds = ("0999", "1999", "2024", "2099", "2100"), ("00", "09", "23", "24"), ("00", "59", "60", "5a")
    times |= {f"{y}-{m:02d}-{d:02d}T{h}:{s}:{s}+09:00"
              for y in years for m in range(14) for d in range(33) for h in hours for s in seconds}  # fmt: skip
    db = Central(postgres_url)
    rows = db.all(f"SELECT at, ({bulk._JST_SHAPED}), CASE WHEN {bulk._JST_SHAPED} THEN true ELSE at ~ ? END, at ~ ?"
                  " FROM unnest(CAST(? AS text[])) AS t(at)", (bulk.SHAPE, bulk.SHAPE, sorted(times)))  # fmt: skip
    db.close()
    assert sum(1 for _at, fast, _stage, _regex in rows if fast) > 1000, "the fast path is taken"
    assert [(at, stage) for at, _fast, stage, regex in rows if stage != regex] == []
