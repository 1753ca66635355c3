"""Upgrade drill: a replica written by the previous schema, with events HQ has not seen yet, is opened by
this tenpo (migrated), and the agent flushes its backlog to a real broker and aggregator exactly once.
A replica from a newer tenpo is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenpo.cloud.admin import add_store, import_products
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge.agent import ensure_keys
from tenpo.edge.config import load_config
from tenpo.edge.feed import _upsert_products
from tenpo.edge.outbox import append_event, read_counter
from tenpo.edge.scheduler import last_run
from tenpo.sandbox import Mosquitto, aggregator_process, store_process, wait_until, write_store_config

BACKLOG = 40


def test_a_previous_schema_replica_is_migrated_and_its_backlog_applied_once(
    tmp_path: Path, broker: Mosquitto, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    newest, previous = edge_db.MIGRATIONS[-1][0], edge_db.MIGRATIONS[-2][0]  # numbers may have gaps
    config_path = write_store_config(tmp_path / "S001", "S001", broker.url)
    config = load_config(str(config_path))
    with monkeypatch.context() as old_tenpo:  # the tenpo before this one: migrations up to N-1
        old_tenpo.setattr(edge_db, "MIGRATIONS", edge_db.MIGRATIONS[:-1])
        db = edge_db.connect(config.database)
        assert edge_db.schema_version(db) == previous
        with edge_db.transaction(db) as conn:
            _upsert_products(conn, "S001", [{"sku": "A1", "jan": None, "name": "tea", "price": 150,
                                             "tax_class": "reduced", "version": 1}], None)  # fmt: skip
            for n in range(BACKLOG):  # written while the link was down, before the upgrade
                seq = append_event(conn, "stock.adjusted", {"sku": "A1", "delta": n + 1, "reason": "count", "location": "floor"})
                conn.execute("INSERT INTO stock_ledger(sku, location, delta, reason, store_seq, created_at)"
                             " VALUES ('A1', 'floor', ?, 'count', ?, 0)", (n + 1, seq))  # fmt: skip
        db.conn.close()
    ensure_keys(config)
    central = Central(sqlite_url)
    products = tmp_path / "products.csv"
    products.write_text("sku,jan,name,price,tax_class\nA1,,tea,150,reduced\n")
    import_products(central, products)
    add_store(central, "S001", config.public_key.read_text(), "Store S001")

    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()  # this tenpo: migrates, then flushes
    wait_until(lambda: central.scalar("SELECT last_applied_seq FROM stores WHERE store_id = 'S001'") == BACKLOG, 60,
               what="HQ to apply the backlog")  # fmt: skip
    db = edge_db.connect(config.database, create=False)
    wait_until(lambda: read_counter(db.conn, "acked") == BACKLOG, 30, what="the store to see the ack")
    assert edge_db.schema_version(db) == newest, "the agent migrated the replica"
    wait_until(lambda: last_run(db.conn, "backup"), 30, what="the agent's scheduler to register its jobs")
    assert [r[0] for r in central.all("SELECT seq FROM events WHERE store_id = 'S001' ORDER BY seq")] == list(
        range(1, BACKLOG + 1)), "every event applied exactly once"  # fmt: skip
    assert central.scalar("SELECT on_hand FROM stock_levels WHERE store_id = 'S001' AND sku = 'A1'") == sum(
        range(1, BACKLOG + 1))  # fmt: skip
    assert agent.terminate() == 0
    aggregator.terminate()

    # A tenpo newer than this one wrote to it: this one must not touch it.
    with edge_db.transaction(db) as conn:
        conn.execute("INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, 'from the future', 0)",
                     (newest + 1,))  # fmt: skip
    db.conn.close()
    with pytest.raises(edge_db.StoreDatabaseError, match=f"schema version {newest + 1} is newer"):
        edge_db.connect(config.database, create=False)
    refused = store_process(config_path).start()
    assert refused.popen is not None and refused.popen.wait(30) == 1, "the agent refuses a newer replica"
    assert "is newer than this tenpo" in config_path.with_suffix(".log").read_text()
    central.close()
