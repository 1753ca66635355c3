"""Two aggregators on one PostgreSQL share the upstream topics and still apply each event once."""

from __future__ import annotations

import random
from pathlib import Path

from tenpo.cloud.admin import import_products
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.config import load_config
from tenpo.edge.outbox import read_counter
from tenpo.sandbox import aggregator_process, provision_store, store_process, wait_until

STORES = ("S101", "S102", "S103")


def test_two_aggregators_share_the_subscription_and_apply_each_event_once(tmp_path: Path, broker, postgres_url) -> None:
    central = Central(postgres_url)
    products = tmp_path / "products.csv"
    products.write_text("sku,jan,name,price,tax_class\nA1,,おにぎり,130,reduced\nB2,,傘,800,standard\n")
    import_products(central, products)
    configs = {s: provision_store(tmp_path / s, s, broker.url, postgres_url, batch_size=50) for s in STORES}
    aggregators = [
        aggregator_process(postgres_url, broker.url, tmp_path / f"agg{i}.log", client_id=f"agg-{i}").start()
        for i in (1, 2)
    ]
    agents = [store_process(path).start() for path in configs.values()]
    dbs = {s: edge_db.connect(load_config(str(p)).database) for s, p in configs.items()}
    rng = random.Random(1)
    for db in dbs.values():
        wait_until(lambda db=db: db.conn.execute("SELECT count(*) FROM products").fetchone()[0] == 2, 30, what="products")
        for _ in range(400):
            replica.adjust_stock(db, rng.choice(("A1", "B2")), rng.choice((-1, 1, 2)), "count")
    for store_id, db in dbs.items():
        last = read_counter(db.conn, "outbox")
        wait_until(lambda store_id=store_id, last=last: central.scalar(
                       "SELECT last_applied_seq FROM stores WHERE store_id = ?", (store_id,)) == last,
                   60, what=f"{store_id} applied")  # fmt: skip
        assert central.scalar("SELECT count(*) FROM events WHERE store_id = ?", (store_id,)) == last
        hq = dict(central.all("SELECT sku, sum(delta) FROM stock_ledger WHERE store_id = ? GROUP BY sku", (store_id,)))
        edge = dict(db.conn.execute("SELECT sku, sum(delta) FROM stock_ledger GROUP BY sku").fetchall())
        assert {k: int(v) for k, v in hq.items()} == edge
        # every store sees the others' stock through the feed
        others = {s for s in STORES if s != store_id}
        wait_until(lambda db=db, store_id=store_id, others=others:
                   {r.store_id for r in replica.stock_levels(db, store_id) if r.as_of} == others, 30,
                   what="other stores' stock in the replica")  # fmt: skip
    workers = dict(central.all("SELECT applied_by, count(*) FROM events GROUP BY applied_by"))
    assert set(workers) == {"agg-1", "agg-2"}, f"both aggregators took a share: {workers}"
    for process in agents + aggregators:
        assert process.terminate() == 0
    central.close()
