"""The monitor's charts (key g) draw what HQ really applied: events per minute per store from batches
applied by the aggregator's own apply function, dead letters and conflicts as they were recorded."""

from __future__ import annotations

import time
from pathlib import Path

from tenpo.cloud.admin import add_store
from tenpo.cloud.apply import apply_batch, dead_letter
from tenpo.cloud.db import Central
from tenpo.cloud.hq import sim
from tenpo.cloud.hq.app import HqApp
from tenpo.cloud.hq.charts import ChartsScreen
from tenpo.cloud.hq.config import MonitorConfig
from tenpo.cloud.hq.data import HqData
from tenpo.cloud.hq.trends import OTHERS, per_minute_series
from tenpo.shared import crypto
from tenpo.shared.protocol import Event, EventBatch
from tests.support.operators import TEST_ADMIN
from tests.test_hq_app import until

APPLIED = {"S001": 30, "S002": 12}


def apply_events(db: Central, store_id: str, number: int, count: int) -> None:
    key = sim._seed_key(number)
    add_store(db, store_id, crypto.public_key_pem(key), f"Store {number}")
    adjustment = {"sku": "A1", "delta": 1, "reason": "count", "location": "floor"}
    events = [Event(seq, f"{store_id}-{seq}", "stock.adjusted", 1, sim.hlc_at(time.time(), seq), adjustment)
              for seq in range(1, count + 1)]  # fmt: skip
    ack = apply_batch(db, store_id, EventBatch(f"stream-{number:03d}", events, backlog=0))
    assert ack.hwm == count and not ack.error


async def test_the_charts_show_applied_events_per_store_and_the_incident_trend(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    db = Central(url)
    for number, (store_id, count) in enumerate(APPLIED.items(), start=1):
        apply_events(db, store_id, number, count)
    dead_letter(db, sim.events_topic("S002"), "bad signature", b"{}", store_id="S002")
    sim.add_points_conflict(db, "S001-0007", ("S001", "S002"), time.time())
    db.close()

    config = MonitorConfig(interval_s=3600)
    # One bucket later: the events just applied lie in whole buckets, the ones a chart draws.
    app = HqApp(HqData(url, config, clock=lambda: time.time() + config.bucket_s), operator=TEST_ADMIN)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.stores_screen.refreshes > 0, what="the first refresh")
        await pilot.press("g")
        screen = app.screen
        assert isinstance(screen, ChartsScreen)
        await until(pilot, lambda: screen.drawn > 0, what="the charts")
        events = {store: round(sum(rates) * config.bucket_s / 60) for store, rates in screen.rates.items()}
        assert events == APPLIED
        assert screen.incidents is not None and screen.incidents.conflicts is not None
        assert (sum(screen.incidents.dead_letters), sum(screen.incidents.conflicts)) == (1, 1)
        assert screen.incidents.dead_letters[-1] == 1, "the newest interval holds the new dead letter"
        rates, incidents = (screen.query_one(f"#{name}").render().plain for name in ("rates", "incidents"))
        assert "Events per minute per store" in rates and "S001" in rates and "S002" in rates
        assert "new dead letters" in incidents and "conflicts detected" in incidents


def test_the_busiest_stores_get_a_line_each_and_the_rest_one_line() -> None:
    trends = {f"S{n:03d}": (n, 0, n) for n in range(1, 10)} | {"S100": (0, 0, 0)}
    series = per_minute_series(trends, bucket_s=10.0, top=3)
    assert list(series) == ["S009", "S008", "S007", OTHERS], "busiest first; a store with no events gets no line"
    assert series["S009"] == (54.0, 0.0, 54.0) and series[OTHERS] == (6.0 * (1 + 2 + 3 + 4 + 5 + 6), 0.0, 126.0)
