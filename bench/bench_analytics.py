"""Analytics at chain scale, next to the targets (issue 17 §10).

    python -m bench.bench_analytics [--lines N] [--skip-sqlite] [--skip-postgresql]

10 million sales lines of 1 million members (``TENPO_BENCH_ANALYTICS_LINES`` or ``--lines`` for a
quick run: members = lines / 10), about 3 lines per receipt over 20 stores and 3,000 SKUs with a
long tail. Measured on PostgreSQL (``TENPO_BENCH_POSTGRES_URL``, default the test server; a
throwaway database) and on SQLite:

- full: ``refresh --full`` (every table rebuilt from the sales) + RFM of every member + basket rules
  chain-wide at support 0.001 — target under 120 s on PostgreSQL (SQLite: reported, same work);
- incremental: 1,000 new sales folded in (their members' rows, their pairs) — target under 1 s.

Sales are written the fast way (COPY on PostgreSQL, executemany in one transaction on SQLite), with
the sale JSON reduced to the lines the analytics read.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tenpo.cloud.analytics.config import AnalyticsConfig
from tenpo.cloud.analytics.refresh import full_refresh, incremental_refresh
from tenpo.cloud.analytics.reports import basket, rfm
from tenpo.cloud.db import Central

FULL_LINES = 10_000_000
TARGET_FULL_PG_S = 120.0
TARGET_INCREMENTAL_S = 1.0
STORES = [f"S{n:03d}" for n in range(1, 21)]
SKUS = [f"P{n:05d}" for n in range(3000)]
CHUNK = 100_000
MIN_SUPPORT = 0.001
INSERT = ("INSERT INTO sales(store_id, stream, receipt_no, kind, refund_of, at, member_id, total, tax, points_earned,"
          " points_redeemed, sale, store_seq, feed_cursor, applied_at)"
          " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")  # fmt: skip


def sales_rows(lines: int, members: int, seed: int, start: int = 0,
               applied_at: float | None = None) -> Iterator[tuple[Any, ...]]:  # fmt: skip
    """Receipts of 1-6 lines (mean ~3) until ``lines`` lines; 85 % of them by a member. Applied one a
    second (``applied_at`` None: at the receipt's number), so the refresh's overlap window holds a few hundred."""
    rng = random.Random(seed)
    weights = [1 / (i + 10) for i in range(len(SKUS))]
    cumulative: list[float] = []
    total_weight = 0.0
    for w in weights:
        total_weight += w
        cumulative.append(total_weight)
    written, n = 0, start
    while written < lines:
        n += 1
        count = min(lines - written, rng.choice((1, 1, 2, 2, 3, 3, 4, 4, 5, 6)))
        skus = {rng.choices(SKUS, cum_weights=cumulative)[0] for _ in range(count)}
        written += count
        store = STORES[n % len(STORES)]
        member = f"G{rng.randrange(members):07d}" if rng.random() < 0.85 else None
        day = 1 + rng.randrange(700)
        at = f"{2024 + day // 365}-{1 + (day % 365) // 31:02d}-{1 + (day % 31) % 28:02d}T{rng.randrange(9, 21):02d}:00:00+09:00"
        body = ",".join(f'{{"sku":"{sku}","qty":1,"unit_price":500,"total":500}}' for sku in sorted(skus))
        total = 500 * len(skus)
        yield (store, "bench", f"R{n:09d}", "sale", None, at, member, total, total // 11, 0, 0, f'{{"lines":[{body}]}}',
               n, None, float(n) if applied_at is None else applied_at)  # fmt: skip


def load(db: Central, rows: Iterator[tuple[Any, ...]]) -> int:
    count = 0
    with db.transaction():
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= CHUNK:
                db.executemany(INSERT, batch)
                count += len(batch)
                batch.clear()
        db.executemany(INSERT, batch)
        count += len(batch)
    return count


def measure(url: str, lines: int) -> dict[str, Any]:
    members = max(10, lines // 10)
    db = Central(url)
    started = time.perf_counter()
    receipts = load(db, sales_rows(lines, members, seed=17))
    db.execute("ANALYZE sales")  # planner statistics, as autovacuum (or SQLite's optimize) keeps them in service
    loaded = time.perf_counter() - started
    config = AnalyticsConfig()
    started = time.perf_counter()
    report = full_refresh(db, config)
    refreshed = time.perf_counter()
    rows = rfm(db, config)
    scored = time.perf_counter()
    purchases, rules = basket(db, config, MIN_SUPPORT)
    ruled = time.perf_counter()
    runs = []
    for run in range(3):
        load(db, sales_rows(3000, members, seed=100 + run, start=receipts + 10_000 * (run + 1),
                            applied_at=float(receipts + 100_000 * (run + 1))))
        added = time.perf_counter()
        fold = incremental_refresh(db, config)
        runs.append((time.perf_counter() - added, fold.purchases, fold.members, fold.pairs))
    db.close()
    return {"receipts": receipts, "members_rfm": len(rows), "rules": len(rules), "purchases": purchases,
            "load_s": loaded, "refresh_s": refreshed - started, "rfm_s": scored - refreshed, "rules_s": ruled - scored,
            "full_s": ruled - started, "pairs": report.pairs, "incremental": runs}  # fmt: skip


def _pg_database() -> tuple[str, Any]:
    import psycopg  # late: only the PostgreSQL half needs it (the hq extra)

    base = os.environ.get("TENPO_BENCH_POSTGRES_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")
    name = f"tenpo_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{base.rpartition('/')[0]}/{name}", drop


def report(label: str, r: dict[str, Any], full_target: float | None) -> None:
    print(f"{label}: {r['receipts']:,} receipts loaded in {r['load_s']:.1f} s; {r['purchases']:,} purchases, "
          f"{r['members_rfm']:,} members, {r['pairs']:,} pair counts, {r['rules']:,} rules at support {MIN_SUPPORT}")  # fmt: skip
    target = f"(target < {full_target:.0f} s)" if full_target else "(reported; the target is PostgreSQL's)"
    verdict = "" if full_target is None else "  OK" if r["full_s"] < full_target else "  OVER"
    print(f"  full RFM + rules      {r['full_s']:7.1f} s {target}{verdict}   = refresh {r['refresh_s']:.1f} s"
          f" + RFM {r['rfm_s']:.1f} s + rules {r['rules_s']:.1f} s")  # fmt: skip
    times = [t for t, *_ in r["incremental"]]
    worst = max(times)
    _t, purchases, touched, pairs = r["incremental"][0]
    print(f"  machine load average now {os.getloadavg()[0]:.1f}")
    print(f"  incremental per 1,000 sales  median {statistics.median(times):.3f} s, worst {worst:.3f} s "
          f"(target < {TARGET_INCREMENTAL_S:.0f} s){'  OK' if worst < TARGET_INCREMENTAL_S else '  OVER'}"
          f"   [{purchases} purchases, {touched} member rows, {pairs} pair counts moved]")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lines", type=int, default=int(os.environ.get("TENPO_BENCH_ANALYTICS_LINES", FULL_LINES)))
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgresql", action="store_true")
    args = parser.parse_args(argv)
    scale = "full size" if args.lines >= FULL_LINES else f"REDUCED size ({args.lines:,} of {FULL_LINES:,} lines)"
    print(f"analytics bench: {args.lines:,} sales lines, {max(10, args.lines // 10):,} members — {scale}")
    # The figures are wall-clock: on a shared machine they stretch with the load (printed for context).
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    if not args.skip_postgresql:
        url, drop = _pg_database()
        try:
            report("PostgreSQL", measure(url, args.lines), TARGET_FULL_PG_S)
        finally:
            drop()
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            report("SQLite", measure(f"sqlite:///{Path(folder) / 'central.db'}", args.lines), None)


if __name__ == "__main__":
    main()
