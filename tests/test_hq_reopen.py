"""The monitor reopened after a store died shows what `tenpo cloud status --json` shows.

Real Mosquitto, a real store agent and aggregator; the store is killed with SIGKILL, then the
monitor opens and hears the store's retained birth and Will, which are older than the database row.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tenpo.cloud.admin import import_products
from tenpo.cloud.db import Central
from tenpo.cloud.hq.app import HqApp
from tenpo.cloud.hq.config import MonitorConfig
from tenpo.cloud.hq.data import HqData
from tenpo.cloud.hq.model import COLUMN_KEYS, format_age
from tenpo.cloud.status import format_skew
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.config import load_config
from tenpo.sandbox import Mosquitto, aggregator_process, provision_store, store_process, tenpo_command, wait_until
from tenpo.shared.mqtt import parse_broker_url
from tests.support.operators import TEST_ADMIN
from tests.test_hq_app import row, until


def cloud_status(url: str, *flags: str) -> str:
    done = subprocess.run(tenpo_command("cloud", "status", *flags, "--db", url), capture_output=True, timeout=60,
                          check=True, text=True)  # fmt: skip
    return done.stdout


def store_row(central: Central) -> tuple[Any, ...]:
    return central.one("SELECT online, backlog, last_applied_seq FROM stores WHERE store_id = 'S001'") or ()


async def test_after_a_kill_the_reopened_monitor_agrees_with_cloud_status(tmp_path: Path, broker: Mosquitto) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    products = tmp_path / "products.csv"
    products.write_text("sku,jan,name,price,tax_class\nA1,4901234567894,緑茶 500ml,150,reduced\n")
    central = Central(url)
    import_products(central, products)
    config_path = provision_store(tmp_path / "S001", "S001", broker.url, url)
    store = edge_db.connect(load_config(str(config_path)).database)
    aggregator = aggregator_process(url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    try:
        wait_until(lambda: store.conn.execute("SELECT count(*) FROM products").fetchone()[0] == 1, 30,
                   what="the product list at the store")  # fmt: skip
        assert agent.terminate() == 0
        for _ in range(7):  # written while the agent is down: its next birth (retained) says backlog 7
            replica.adjust_stock(store, "A1", 1, "count")
        agent = store_process(config_path).start()
        wait_until(lambda: store_row(central)[1:] == (0, 7), 30, what="HQ to apply all 7 and hear backlog 0")
        agent.kill()
        wait_until(lambda: store_row(central)[0] == 0, 30, what="the aggregator to record the Will")
        report = json.loads(cloud_status(url, "--json"))
        table = cloud_status(url)
    finally:
        agent.kill()
        aggregator.terminate()
        store.conn.close()
        central.close()
    (expected,) = report["stores"]
    assert expected["backlog"] == 0 and not expected["online"]

    now = report["as_of"]  # the monitor's clock pinned to the report's, so ages compare exactly
    app = HqApp(HqData(url, MonitorConfig(interval_s=3600), clock=lambda: now), parse_broker_url(broker.url), operator=TEST_ADMIN)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.stores_screen.refreshes > 0, what="the first refresh")
        presence = lambda: app.presence.get("S001")  # noqa: E731
        await until(pilot, lambda: presence() and presence().birth_bdseq >= 0 and presence().death_bdseq >= 0, 20,
                    "the retained birth and Will")  # fmt: skip
        cells = dict(zip(COLUMN_KEYS, (cell.plain for cell in row(app, "S001"))))
        view = app.stores_screen.views["S001"]
    assert cells["link"] == "OFF"
    assert cells["seen"] == format_age(expected["seen_age_s"])
    assert cells["backlog"] == str(expected["backlog"]) == "0"
    assert cells["skew"] == format_skew(expected["skew_ms"]) and cells["skew"].endswith(("ms", "s"))
    (line,) = [text for text in table.splitlines() if text.startswith("S001")]
    assert line.split()[-1] == cells["skew"], "the text report shows the same skew, with its unit"
    assert (view.backlog, view.skew_ms, view.seen_age_s) == (expected["backlog"], expected["skew_ms"], expected["seen_age_s"])
