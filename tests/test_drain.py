"""After an outage every store sends its backlog at once: two aggregators on PostgreSQL share the
subscription and apply every event exactly once, even when one of them is killed with SIGKILL mid-drain
(the stores resend what was not acknowledged, and HQ skips what it already has).

The stores are simulated by one load generator that signs and resends as the store agent does
(bench/store_load.py); the full-size drain (500 stores × 2,000 events) is `python -m bench apply`.
"""

from __future__ import annotations

from pathlib import Path

from bench.store_load import StoreLoad, check_applied_once, make_stores
from tenpo.cloud.db import Central
from tenpo.sandbox import Mosquitto, aggregator_process, wait_until

STORES, EVENTS_EACH, BATCH = 20, 200, 50


def test_two_aggregators_drain_twenty_backlogs_once_with_one_killed(
    tmp_path: Path, broker: Mosquitto, postgres_url: str
) -> None:
    db = Central(postgres_url)
    stores = make_stores(db, STORES, EVENTS_EACH)
    load = StoreLoad(broker.port, stores, batch_size=BATCH, inflight=4, ack_timeout_s=2.0)
    aggregators = [aggregator_process(postgres_url, broker.url, tmp_path / f"agg-{n}.log", f"agg-{n}").start()
                   for n in (1, 2)]  # fmt: skip
    try:
        wait_until(lambda: load.figures.hq_seen >= {"agg-1", "agg-2"}, 30, what="both aggregators online")
        load.start()
        total = load.total_events()
        wait_until(lambda: load.acked_events() >= total // 4, 120, what="a quarter of the backlog acknowledged")
        aggregators[0].kill()  # mid-drain: what it had received but not applied is lost with it
        assert load.acked_events() < total, "the kill came while events were still waiting"
        wait_until(load.done, 180, interval=0.1, what="every store's backlog acknowledged")
        assert aggregators[1].alive()
        problems = check_applied_once(db, stores)
        assert problems == [], "\n".join(problems[:10])
        assert db.scalar("SELECT count(*) FROM dead_letters") == 0
        applied_by = dict(db.all("SELECT applied_by, count(*) FROM events GROUP BY applied_by"))
        assert set(applied_by) == {"agg-1", "agg-2"}, "both aggregators took a share of the work"
        assert sum(applied_by.values()) == total
    finally:
        load.stop()
        for aggregator in aggregators:
            aggregator.kill()
        db.close()
