"""HQ at chain scale (`python -m bench apply`), each figure next to what it is measured against in this run.

- Aggregator apply rate on SQLite and on PostgreSQL, interleaved rounds of the same 500-event batches (the
  machine may be shared: the ratio of the two is the figure that travels); PostgreSQL's target is ten times
  the rate before set-based apply and at least half of SQLite's. What is measured is the apply alone (no
  MQTT, no signatures) of one store's backlog whose batches wait in the aggregator's queue a window of 4 at a
  time (the store agent's in-flight limit), each window in one transaction (group commit); PostgreSQL one
  batch per transaction, what a lone batch gets, is measured beside it.
- Drain after an outage: 500 registered stores, 2,000 signed events each, sent at once by a load generator
  that batches, windows and resends as the store agent does (bench/store_load.py), to two aggregators on
  PostgreSQL sharing the subscription; one is killed with SIGKILL halfway. Time until every event is
  acknowledged, applied exactly once (totals checked), and each aggregator's peak RSS.

Ends with one JSON line: sqlite_events_per_s, postgresql_events_per_s, drain_500_stores_s (and more).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench.bench_sync import apply_rate
from bench.store_load import StoreLoad, check_applied_once, make_stores, rss_peak_kb
from tenpo.cloud.db import Central
from tenpo.sandbox import Mosquitto, aggregator_process, wait_until

PG_BEFORE = 5_620  # events/s on PostgreSQL before set-based apply (row-at-a-time; quiet machine)
ROUNDS, EVENTS_PER_ROUND = 3, 30_000
WINDOW = 4  # a store's batches in flight (bench/store_load.py, the store agent): what waits together at HQ
DRAIN_STORES, DRAIN_EVENTS = int(os.environ.get("TENPO_DRAIN_STORES", 500)), int(os.environ.get("TENPO_DRAIN_EVENTS", 2000))
# The store agent resends from its acknowledged mark after this long without an ack (edge/config.py)
ACK_TIMEOUT_S = float(os.environ.get("TENPO_DRAIN_ACK_TIMEOUT_S", 5.0))


def throwaway_postgres() -> tuple[str, Callable[[], None]]:
    url = os.environ.get("TENPO_TEST_POSTGRES_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")
    name = f"tenpo_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url.rsplit("/", 1)[0] + "/" + name, drop


def apply_rates(workdir: Path) -> tuple[float, float, float]:
    """Best of interleaved rounds on each database: load from other work on the machine only ever slows a round.
    SQLite and PostgreSQL with the window of batches in one transaction; PostgreSQL with a transaction each."""
    sqlite_rates, pg_rates, pg_alone_rates = [], [], []
    for n in range(ROUNDS):
        sqlite_rates.append(apply_rate(f"sqlite:///{workdir / f'apply-{n}.db'}", EVENTS_PER_ROUND, window=WINDOW))
        for window, rates in ((WINDOW, pg_rates), (1, pg_alone_rates)):
            url, drop = throwaway_postgres()
            try:
                rates.append(apply_rate(url, EVENTS_PER_ROUND, window=window))
            finally:
                drop()
    return max(sqlite_rates), max(pg_rates), max(pg_alone_rates)


def drain(workdir: Path) -> dict[str, float]:
    broker = Mosquitto(workdir).start()
    url, drop = throwaway_postgres()
    aggregators = []
    load = None
    try:
        db = Central(url)
        stores = make_stores(db, DRAIN_STORES, DRAIN_EVENTS)
        load = StoreLoad(broker.port, stores, batch_size=500, inflight=4, ack_timeout_s=ACK_TIMEOUT_S)
        aggregators = [aggregator_process(url, broker.url, workdir / f"agg-{n}.log", f"agg-{n}").start() for n in (1, 2)]
        wait_until(lambda: load.figures.hq_seen >= {"agg-1", "agg-2"}, 60, what="both aggregators online")
        load.start()
        total = load.total_events()
        peaks = {0: 0, 1: 0}

        def progress(target: int) -> Callable[[], bool]:
            def check() -> bool:
                for n, aggregator in enumerate(aggregators):
                    if aggregator.alive():
                        peaks[n] = max(peaks[n], rss_peak_kb(aggregator.popen.pid))  # type: ignore[union-attr]
                return load.acked_events() >= target or load.done()

            return check

        wait_until(progress(total // 2), 3600, interval=0.5, what="half the backlog acknowledged")
        halfway = time.monotonic() - load.figures.started
        aggregators[0].kill()
        wait_until(progress(total), 3600, interval=0.5, what="the whole backlog acknowledged")
        wait_until(load.done, 60)
        seconds = (load.figures.drained or time.monotonic()) - load.figures.started
        problems = check_applied_once(db, stores)
        if problems:
            print("NOT applied exactly once:\n  " + "\n  ".join(problems[:20]), file=sys.stderr)
        dead = int(db.scalar("SELECT count(*) FROM dead_letters", (), 0))
        db.close()
        return {"drain_500_stores_s": round(seconds, 1), "drain_events": total, "drain_halfway_s": round(halfway, 1),
                "drain_events_per_s": round(total / seconds), "drain_resends": load.figures.resends,
                "drain_exactly_once": not problems and dead == 0, "drain_dead_letters": dead,
                "aggregator_killed_peak_rss_mb": round(peaks[0] / 1024),
                "aggregator_peak_rss_mb": round(peaks[1] / 1024)}  # fmt: skip
    finally:
        if load is not None:
            load.stop()
        for aggregator in aggregators:
            aggregator.kill()
        drop()
        broker.stop()


def run() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="tenpo-bench-apply-"))
    sqlite_rate, pg_rate, pg_alone = apply_rates(workdir)
    load = os.getloadavg()[0]  # PG_BEFORE is a quiet machine's figure: the ratio to SQLite is this run's own
    print(f"aggregator apply on SQLite: {sqlite_rate:,.0f} events/s (best of {ROUNDS} rounds of {EVENTS_PER_ROUND:,},"
          f" one store's batches applied {WINDOW} to a transaction as its window waits)")
    print(f"aggregator apply on PostgreSQL: {pg_rate:,.0f} events/s  (target >= {10 * PG_BEFORE:,}: 10x the"
          f" {PG_BEFORE:,}/s before set-based apply on a quiet machine, {pg_rate / PG_BEFORE:.1f}x now at load"
          f" average {load:.1f} on {os.cpu_count()} cores; vs SQLite in this run {pg_rate / sqlite_rate:.2f},"
          " target >= 0.50)")  # fmt: skip
    print(f"aggregator apply on PostgreSQL, one batch per transaction: {pg_alone:,.0f} events/s")
    figures = drain(workdir)
    print(f"drain of {DRAIN_STORES} stores x {DRAIN_EVENTS:,} events through two aggregators on PostgreSQL"
          f" (one killed at half): {figures['drain_500_stores_s']:.1f} s ({figures['drain_events_per_s']:,} events/s),"
          f" exactly once: {figures['drain_exactly_once']}, resends {figures['drain_resends']}")  # fmt: skip
    print(f"aggregator peak RSS: {figures['aggregator_peak_rss_mb']} MB (the one killed: "
          f"{figures['aggregator_killed_peak_rss_mb']} MB before the kill)")
    print(json.dumps({"sqlite_events_per_s": round(sqlite_rate), "postgresql_events_per_s": round(pg_rate),
                      "postgresql_vs_sqlite": round(pg_rate / sqlite_rate, 2),
                      "postgresql_one_batch_per_transaction_events_per_s": round(pg_alone), "load_average": round(load, 1),
                      **figures}))  # fmt: skip


if __name__ == "__main__":
    run()
