"""`tenpo edge backup` / `restore` and `tenpo cloud backup`: consistent copies while checkout writes,
and a restored old backup that HQ never applies twice."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.cloud.admin import import_products
from tenpo.cloud.backup import backup_central
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.backup import backup_store, last_backup, restore_store, store_backups
from tenpo.edge.checkout import Payment, Scan
from tenpo.edge.checkout.store import SaleOrder, checkout_rules, commit_sale
from tenpo.edge.config import load_config
from tenpo.edge.feed import _upsert_products
from tenpo.edge.outbox import get_meta, read_counter
from tenpo.sandbox import Mosquitto, aggregator_process, provision_store, store_process, wait_until, write_store_config
from tenpo.shared.errors import UserError

PRODUCTS = [{"sku": f"P{n}", "jan": None, "name": f"item {n}", "price": 100 + n, "tax_class": "standard", "version": 1}
            for n in range(5)]  # fmt: skip


def _store(tmp_path: Path, store_id: str = "S001"):
    config = load_config(str(write_store_config(tmp_path / store_id, store_id, "mqtt://127.0.0.1:1")))
    db = edge_db.connect(config.database)
    with edge_db.transaction(db) as conn:
        _upsert_products(conn, store_id, PRODUCTS, None)
    return config, db


def _consistent(path: Path) -> tuple[int, int]:
    """(sales, events) in a copy, asserting every sale came with all its lines, stock rows and events."""
    conn = sqlite3.connect(path)
    sales = conn.execute("SELECT count(*) FROM sales").fetchone()[0]
    lines = conn.execute("SELECT count(*) FROM sale_lines").fetchone()[0]
    stock = conn.execute("SELECT count(*) FROM stock_ledger WHERE reason = 'sale'").fetchone()[0]
    events = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    counter = conn.execute("SELECT value FROM counters WHERE name = 'outbox'").fetchone()
    conn.close()
    assert lines == stock == sales * len(PRODUCTS), "a sale is in the copy whole or not at all"
    assert events == (counter[0] if counter else 0), "the outbox counter matches the events copied"
    return sales, events


def test_backup_while_another_connection_writes_sales_is_consistent_private_and_rotated(tmp_path: Path) -> None:
    config, db = _store(tmp_path)
    order = SaleOrder(tuple(Scan(f"sku:{p['sku']}") for p in PRODUCTS), None, 0, (Payment("cash", 10_000),))
    rules = checkout_rules(config)
    stop = threading.Event()
    written = [0]
    warmed = threading.Event()

    def clerk() -> None:  # the till, on its own connection, as the clerk terminal process would be
        till = edge_db.connect(config.database)
        while not stop.is_set():
            commit_sale(till, config, order, rules=rules)
            written[0] += 1
            if written[0] >= 5:
                warmed.set()
        till.conn.close()

    thread = threading.Thread(target=clerk)
    thread.start()
    try:
        assert warmed.wait(30)
        directory = tmp_path / "backups"
        results = [backup_store(config.database, "S001", directory, keep=2) for _ in range(3)]
        during = written[0]
        wait_until(lambda: written[0] > during + 3, 30, what="checkout to go on after the backups")
    finally:
        stop.set()
        thread.join()
    kept = store_backups(directory, "S001")
    assert kept == [r.path for r in results[1:]], "only the newest two are kept"
    assert not results[0].path.exists()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in kept:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert edge_db.check_integrity(path) == []
        sales, _events = _consistent(path)
        assert sales >= 5
    assert _consistent(config.database)[0] > _consistent(kept[-1])[0], "the copy is a moment, the till went on"
    assert last_backup(db.conn)["path"] == str(kept[-1])


def test_restore_refuses_another_stores_backup_a_newer_schema_and_a_running_agent(tmp_path: Path, capsys) -> None:
    config, db = _store(tmp_path)
    other, other_db = _store(tmp_path, "S002")
    foreign = backup_store(other.database, "S002", tmp_path / "b2").path
    assert main(["edge", "restore", "--config", str(config.path), str(foreign)]) == 1
    assert "belongs to store S002" in capsys.readouterr().err

    newer = backup_store(config.database, "S001", tmp_path / "b1").path
    conn = sqlite3.connect(newer)
    conn.execute("INSERT INTO schema_migrations(version, name, applied_at) VALUES (999, 'future', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(UserError, match="schema version 999, newer"):
        restore_store(config, newer)

    good = backup_store(config.database, "S001", tmp_path / "b1").path
    with edge_db.transaction(db) as conn:  # this process poses as the running agent
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('link', ?)", (json.dumps({"pid": os.getpid()}),))
    with pytest.raises(UserError, match="in use by a running agent"):
        restore_store(config, good)
    assert config.database.exists()


def test_restored_old_backup_starts_a_new_stream_and_hq_applies_nothing_twice(tmp_path: Path, broker: Mosquitto,
                                                                              sqlite_url: str) -> None:  # fmt: skip
    products = tmp_path / "products.csv"
    products.write_text("sku,jan,name,price,tax_class\nA1,,tea,150,reduced\n")
    central = Central(sqlite_url)
    import_products(central, products)
    config_path = provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url)
    config = load_config(str(config_path))
    db = edge_db.connect(config.database)
    hq_applied = lambda: int(central.scalar("SELECT coalesce(sum(last_applied_seq), 0) FROM stores"))  # noqa: E731
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    wait_until(lambda: db.conn.execute("SELECT count(*) FROM products").fetchone()[0] == 1, 30, what="products")
    for _ in range(3):
        replica.adjust_stock(db, "A1", 1, "count")
    wait_until(lambda: hq_applied() == 3, 30, what="events 1-3 at HQ")
    wait_until(lambda: replica.sync_status(db)["outbox_pending"] == 0, 30, what="the store to see the ack")
    assert agent.terminate() == 0
    for _ in range(2):  # 4 and 5: unsent when the backup is taken
        replica.adjust_stock(db, "A1", 10, "delivery")
    backup = backup_store(config.database, "S001", tmp_path / "backups").path
    agent = store_process(config_path).start()
    for _ in range(2):  # 6 and 7: the old database goes on after the backup
        replica.adjust_stock(db, "A1", 100, "delivery")
    wait_until(lambda: hq_applied() == 7, 30, what="events 1-7 at HQ")
    old_stream = get_meta(db.conn, "stream")
    assert agent.terminate() == 0
    db.conn.close()

    assert main(["edge", "restore", "--config", str(config_path), str(backup)]) == 0
    db = edge_db.connect(config.database)
    assert get_meta(db.conn, "stream") != old_stream
    assert read_counter(db.conn, "outbox") == 0, "numbering starts again at 1 in the new stream"
    parked = db.conn.execute("SELECT count(*) FROM dead_letters WHERE source = 'restore'").fetchone()[0]
    assert parked == 2, "events 4 and 5 are kept as dead letters, not resent"
    replica.adjust_stock(db, "A1", 1000, "after restore")
    agent = store_process(config_path).start()
    wait_until(lambda: central.scalar("SELECT count(*) FROM events") == 8, 30, what="the new stream's first event")
    rows = central.all("SELECT stream, seq, event_id FROM events ORDER BY applied_at, seq")
    ids = [r[2] for r in rows]
    assert len(ids) == len(set(ids)), "no event applied twice"
    assert [r[1] for r in rows if r[0] == old_stream] == list(range(1, 8))
    assert [r[1] for r in rows if r[0] != old_stream] == [1]
    assert central.scalar("SELECT sum(delta) FROM stock_ledger WHERE store_id = 'S001'") == 3 + 20 + 200 + 1000
    reused = central.scalar("SELECT count(*) FROM dead_letters WHERE reason LIKE '%reused%'")
    assert reused == 0, "no sequence number was reused"
    assert agent.terminate() == 0
    aggregator.terminate()
    central.close()


def test_cloud_backup_of_a_sqlite_hq(tmp_path: Path, sqlite_url: str, capsys) -> None:
    central = Central(sqlite_url)
    products = tmp_path / "products.csv"
    products.write_text("sku,jan,name,price,tax_class\nA1,,tea,150,reduced\n")
    import_products(central, products)
    central.close()
    assert main(["cloud", "backup", "--db", sqlite_url, "--to", str(tmp_path / "hq"), "--json"]) == 0
    copy = Path(json.loads(capsys.readouterr().out)["path"])
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert sqlite3.connect(copy).execute("SELECT count(*) FROM products").fetchone()[0] == 1
    assert main(["cloud", "backup", "--db", "postgresql://x@127.0.0.1/none", "--to", str(tmp_path)]) == 1
    assert "pg_dump" in capsys.readouterr().err
    with pytest.raises(UserError):
        backup_central("sqlite:///" + str(tmp_path / "missing.db"), tmp_path / "hq")
