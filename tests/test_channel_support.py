"""What the channel tests share: a chain (HQ with products, stores S001 and S002 as real agents, an aggregator
process, a private Mosquitto), stock put on the shelves through the stores' own ledgers, and a clerk."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from tenpo.channel import Client
from tenpo.cloud.admin import import_products
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.config import StoreConfig, load_config
from tenpo.sandbox import (
    Mosquitto,
    Process,
    aggregator_process,
    provision_store,
    store_process,
    tenpo_command,
    wait_until,
)
from tests.support.clerks import add_test_clerk

CLERK, PIN = "1001", "482915"
PRODUCTS = "sku,jan,name,price,tax_class\nUMBRELLA,,傘 65cm,1980,standard\nTSHIRT-M,,Tシャツ M,2480,standard\n"


@dataclass
class Chain:
    tmp: Path
    broker: Mosquitto
    db_url: str
    central: Central
    configs: dict[str, Path]
    agents: dict[str, Process] = field(default_factory=dict)
    aggregator: Process | None = None
    dbs: dict[str, sqlite_utils.Database] = field(default_factory=dict)

    def config(self, store_id: str) -> StoreConfig:
        return load_config(str(self.configs[store_id]))

    def db(self, store_id: str) -> sqlite_utils.Database:
        if store_id not in self.dbs:
            self.dbs[store_id] = edge_db.connect(self.config(store_id).database)
        return self.dbs[store_id]

    def start_store(self, store_id: str) -> None:
        self.agents[store_id] = store_process(self.configs[store_id]).start()

    def stop_store(self, store_id: str) -> None:
        self.agents.pop(store_id).terminate()

    def hq_on_hand(self, store_id: str, sku: str) -> int:
        return int(self.central.scalar("SELECT on_hand FROM stock_levels WHERE store_id = ? AND sku = ?", (store_id, sku), 0))

    def receive(self, store_id: str, sku: str, qty: int) -> None:
        """Stock arrives at the store (its own ledger, reported to HQ); waits until HQ has it."""
        before = self.hq_on_hand(store_id, sku)
        replica.adjust_stock(self.db(store_id), sku, qty, "received")
        wait_until(lambda: self.hq_on_hand(store_id, sku) == before + qty, 30, what=f"{sku} at HQ for {store_id}")

    def client(self, channel: str = "web", **kwargs: Any) -> Client:
        return Client(self.broker.url, channel, **kwargs).connect()

    def hq_state(self, reservation_id: str) -> str | None:
        value = self.central.scalar("SELECT state FROM reservations WHERE reservation_id = ?", (reservation_id,))
        return None if value is None else str(value)

    def store_state(self, store_id: str, reservation_id: str) -> str | None:
        row = self.db(store_id).conn.execute("SELECT state FROM reservations WHERE reservation_id = ?",
                                             (reservation_id,)).fetchone()  # fmt: skip
        return None if row is None else str(row[0])


def make_chain(tmp_path: Path, broker: Mosquitto, db_url: str, stores: tuple[str, ...] = ("S001", "S002"),
               products_csv: str = PRODUCTS) -> Chain:  # fmt: skip
    products = tmp_path / "products.csv"
    products.write_text(products_csv)
    central = Central(db_url)
    import_products(central, products)
    configs = {s: provision_store(tmp_path / s, s, broker.url, db_url) for s in stores}
    chain = Chain(tmp_path, broker, db_url, central, configs)
    for store_id in stores:
        add_test_clerk(chain.db(store_id), CLERK, "山田 店長", "manager", PIN)
    return chain


@pytest.fixture
def chain(tmp_path: Path, broker: Mosquitto, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Chain]:
    yield from running_chain(tmp_path, broker, sqlite_url, monkeypatch)


def running_chain(tmp_path: Path, broker: Mosquitto, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                  products_csv: str = PRODUCTS) -> Iterator[Chain]:  # fmt: skip
    """HQ's aggregator and every store's agent running, each store holding the products; stopped after."""
    monkeypatch.setenv("TENPO_RESERVATION_SWEEP_S", "0.5")  # the aggregator's expiry job, run often
    made = make_chain(tmp_path, broker, sqlite_url, products_csv=products_csv)
    made.aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    for store_id in made.configs:
        made.start_store(store_id)
    products = len(products_csv.strip().splitlines()) - 1
    for store_id in made.configs:
        wait_until(lambda s=store_id: made.db(s).conn.execute("SELECT count(*) FROM products").fetchone()[0] == products,
                   30, what=f"products at {store_id}")  # fmt: skip
    yield made
    for process in (*made.agents.values(), made.aggregator):
        if process is not None and process.alive():
            process.terminate()
    made.central.close()


def tenpo(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The real command line, as a script at the web shop or the counter would run it."""
    return subprocess.run(tenpo_command(*args), input=stdin, capture_output=True, text=True, timeout=60,
                          executable=sys.executable)  # fmt: skip
