"""HQ monitor figures: one stores-table refresh for 500 stores (target < 50 ms), printed next to the target.

A refresh is the database read (on a worker thread in the app) plus applying the changed cells to the
DataTable (on the UI thread). The clock moves one second per refresh, so every row's "seen" cell
changes each time, as it does live. Measured on SQLite and PostgreSQL, headless (App.run_test).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from tenpo.cloud.db import Central
from tenpo.cloud.hq import sim
from tenpo.cloud.hq.app import HqApp
from tenpo.cloud.hq.config import MonitorConfig
from tenpo.cloud.hq.data import HqData

STORES = 500
EVENTS_PER_STORE = 200  # 100,000 events in the ten-minute sparkline window
ROUNDS = 40
TARGET_MS = 50.0
POSTGRES_URL = os.environ.get("TENPO_TEST_POSTGRES_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")


async def measure(url: str) -> tuple[list[float], list[float]]:
    clock = [sim.FIXED_NOW]
    data = HqData(url, MonitorConfig(interval_s=3600), clock=lambda: clock[0])
    app = HqApp(data)
    queries, applies = [], []
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.stores_screen
        for _ in range(ROUNDS):
            clock[0] += 1.0
            overview = data.overview()
            screen.apply_overview(overview)
            queries.append(overview.query_ms)
            applies.append(screen.last_apply_ms)
            await pilot.pause()
    return queries, applies


def report(label: str, queries: list[float], applies: list[float]) -> None:
    totals = sorted(q + a for q, a in zip(queries, applies))
    median, p95 = statistics.median(totals), totals[int(len(totals) * 0.95) - 1]
    verdict = "ok" if p95 < TARGET_MS else "OVER TARGET"
    print(f"  {label:<10} refresh of {STORES} stores: median {median:6.1f} ms, p95 {p95:6.1f} ms "
          f"(read {statistics.median(queries):.1f} + paint {statistics.median(applies):.1f})  "
          f"target < {TARGET_MS:.0f} ms  {verdict}")  # fmt: skip


def seed(url: str) -> None:
    db = Central(url)
    sim.seed_stores(db, STORES, events_per_store=EVENTS_PER_STORE)
    db.close()


def main() -> None:
    print(f"HQ monitor: {STORES} stores, {STORES * EVENTS_PER_STORE:,} events in the window, {ROUNDS} refreshes")
    with tempfile.TemporaryDirectory() as workdir:
        url = f"sqlite:///{Path(workdir) / 'central.db'}"
        seed(url)
        report("sqlite", *asyncio.run(measure(url)))
    try:
        import psycopg

        name = f"tenpo_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # the figure on SQLite still stands
        print(f"  postgresql skipped: {str(exc).splitlines()[0]}")
        return
    url = f"{POSTGRES_URL.rpartition('/')[0]}/{name}"
    try:
        seed(url)
        report("postgresql", *asyncio.run(measure(url)))
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"  ({time.monotonic() - started:.1f}s)")
