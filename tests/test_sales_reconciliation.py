"""HQ reconciliation: two stores offline at once spend the same member's points; HQ records exactly
one conflict with both sides' entries, resolves it by an explicit entry, and its totals of sales,
points and stock equal the stores'.

The first tests feed real store outboxes to HQ's apply function on both central dialects; the last
runs the whole chain: real agents, a real Mosquitto that goes away, and the aggregator.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.cloud.admin import add_store, import_products
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.changes import record_changes
from tenpo.cloud.db import Central
from tenpo.cloud.sales import conflicts
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.checkout import Payment, Scan
from tenpo.edge.checkout.store import SaleOrder, commit_sale, refund_sale
from tenpo.edge.config import load_config
from tenpo.edge.feed import _upsert_members, _upsert_products
from tenpo.edge.outbox import pending, read_counter, stream_id
from tenpo.sandbox import Mosquitto, aggregator_process, provision_store, store_process, wait_until, write_store_config
from tenpo.shared import crypto
from tenpo.shared.protocol import EventBatch
from tests.support.operators import sign_in_as

PRODUCTS_CSV = ("sku,jan,name,price,tax_class\nTEA-500,4901085089583,緑茶 500ml,150,reduced\n"
                "TSHIRT-M,4560000000012,Tシャツ M 白,1980,standard\nBAG,4560000000029,トートバッグ,2000,standard\n")  # fmt: skip
PRODUCT_ROWS = [
    {"sku": "TEA-500", "jan": "4901085089583", "name": "緑茶 500ml", "price": 150, "tax_class": "reduced", "version": 1},
    {"sku": "TSHIRT-M", "jan": "4560000000012", "name": "Tシャツ M 白", "price": 1980, "tax_class": "standard", "version": 1},
    {"sku": "BAG", "jan": "4560000000029", "name": "トートバッグ", "price": 2000, "tax_class": "standard", "version": 1},
]
MEMBER = "M-0001"
GRANT = 5000
# ¥3,980 paid with 3,000 points (the offline cap per sale) and ¥980 cash: earns 9 points.
BIG_REDEMPTION = SaleOrder((Scan("sku:TSHIRT-M"), Scan("sku:BAG")), MEMBER, 3000, (Payment("cash", 980),))


def grant_points(central: Central, member_id: str, points: int) -> None:
    """HQ credits points (say, from the web shop) and sends the balance down, as the resolution does."""
    with central.transaction():
        central.execute(
            "INSERT INTO points_ledger(member_id, delta, kind, ref, store_id, stream, store_seq, created_at)"
            " VALUES (?, ?, 'adjustment', 'web-shop', 'HQ', 'hq', 0, ?)",
            (member_id, points, time.time()),
        )
        record_changes(central, [conflicts.points_balance_change(central, member_id)], time.time())


def store_sales_total(db) -> int:
    return int(db.conn.execute("SELECT coalesce(sum(total), 0) FROM sales").fetchone()[0])


def hq_sales_total(central: Central, store_id: str) -> int:
    return int(central.scalar("SELECT coalesce(sum(total), 0) FROM sales WHERE store_id = ?", (store_id,), 0))


def ledger(db, table: str, key: str) -> dict[str, int]:
    return {k: int(v) for k, v in db.conn.execute(f"SELECT {key}, sum(delta) FROM {table} GROUP BY {key}")}


def hq_ledger(central: Central, table: str, key: str, store_id: str) -> dict[str, int]:
    rows = central.all(f"SELECT {key}, sum(delta) FROM {table} WHERE store_id = ? GROUP BY {key}", (store_id,))
    return {k: int(v) for k, v in rows}


# ---------------------------------------------------------------------------- HQ logic, both dialects


@pytest.fixture
def two_stores(tmp_path: Path, central_url: str):
    central = Central(central_url)
    stores = {}
    for store_id in ("S001", "S002"):
        config = load_config(str(write_store_config(tmp_path / store_id, store_id, "mqtt://127.0.0.1:1")))
        crypto.generate_keypair(config.private_key, config.public_key)
        add_store(central, store_id, config.public_key.read_text(), store_id)
        db = edge_db.connect(config.database)
        with edge_db.transaction(db) as conn:
            _upsert_products(conn, store_id, PRODUCT_ROWS, None)
            _upsert_members(conn, store_id, [{"member_id": MEMBER, "name": "佐藤 花子", "points": GRANT, "version": 1}], None)
        replica.adjust_stock(db, "TSHIRT-M", 5, "opening count")
        replica.adjust_stock(db, "BAG", 5, "opening count")
        replica.adjust_stock(db, "TEA-500", 24, "opening count")
        stores[store_id] = (config, db)
    grant_points(central, MEMBER, GRANT)
    yield central, stores
    central.close()


def sync_up(central: Central, store_id: str, db, batch_size: int = 7) -> None:
    """What the agent does: send the outbox in batches until HQ has applied all of it."""
    last = read_counter(db.conn, "outbox")
    hwm = int(central.scalar("SELECT last_applied_seq FROM stores WHERE store_id = ?", (store_id,), 0))
    while hwm < last:
        batch = EventBatch(stream_id(db.conn), pending(db.conn, hwm, batch_size))
        hwm = apply_batch(central, store_id, batch).hwm


def test_two_stores_redeeming_offline_make_exactly_one_conflict(two_stores) -> None:
    central, stores = two_stores
    (config_a, db_a), (config_b, db_b) = stores["S001"], stores["S002"]
    sale_a = commit_sale(db_a, config_a, BIG_REDEMPTION)  # both offline: each sees 5,000 points
    sale_b = commit_sale(db_b, config_b, BIG_REDEMPTION)
    commit_sale(db_b, config_b, SaleOrder((Scan("4901085089583"),), MEMBER, payments=(Payment("cash", 150),)))
    sync_up(central, "S001", db_a)
    assert conflicts.list_open(central) == [], "one store's redemption is covered by the balance"
    sync_up(central, "S002", db_b)

    balance = GRANT - 3000 + 9 - 3000 + 9 + 1
    assert central.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (MEMBER,)) == balance
    [conflict] = conflicts.list_open(central)
    assert (conflict.kind, conflict.subject, conflict.store_id, conflict.level) == (conflicts.POINTS, MEMBER, "S002", balance)
    sides = {(e["store_id"], e["ref"], e["delta"]) for e in conflict.detail["entries"]}
    assert sides == {("S001", sale_a.receipt_no, -3000), ("S002", sale_b.receipt_no, -3000)}
    assert conflicts.open_counts_by_store(central) == {"S002": 1}

    # HQ's sales, points and stock equal the stores'.
    for store_id, (_config, db) in stores.items():
        assert hq_sales_total(central, store_id) == store_sales_total(db)
        assert hq_ledger(central, "stock_ledger", "sku", store_id) == ledger(db, "stock_ledger", "sku")
        assert hq_ledger(central, "points_ledger", "member_id", store_id) == ledger(db, "points_ledger", "member_id")
    assert central.scalar("SELECT count(*) FROM sales") == 3

    resolved = conflicts.resolve(central, conflict.id, "write-off", note="two stores offline", actor="hq-test")
    assert resolved.status == "resolved" and resolved.resolution["entry"]["delta"] == -balance
    assert central.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (MEMBER,)) == 0
    history = central.all("SELECT delta, kind FROM points_ledger WHERE member_id = ? ORDER BY id", (MEMBER,))
    assert history[-1] == (-balance, "adjustment") and len(history) == 1 + 5 + 1, "appended, nothing rewritten"
    change = json.loads(central.scalar("SELECT data FROM changes WHERE kind = 'points.balance' ORDER BY seq DESC LIMIT 1"))
    through = {s: read_counter(db.conn, "outbox") for s, (_c, db) in stores.items()}
    assert change == {"member_id": MEMBER, "balance": 0, "through": through}
    audit = central.one("SELECT actor, action, subject FROM audit_log WHERE action = 'conflict.resolved'")
    assert tuple(audit) == ("hq-test", "conflict.resolved", MEMBER)
    with pytest.raises(Exception, match="already resolved"):
        conflicts.resolve(central, conflict.id, "accept")


def test_oversold_stock_is_a_conflict_resolved_by_a_correcting_entry(two_stores) -> None:
    central, stores = two_stores
    config, db = stores["S001"]
    for _ in range(7):  # 5 on hand
        commit_sale(db, config, SaleOrder((Scan("sku:BAG"),), payments=(Payment("card", 2000),)))
    sale = commit_sale(db, config, SaleOrder((Scan("sku:TSHIRT-M"),), payments=(Payment("cash", 1980),)))
    refund_sale(db, config, sale.receipt_no)
    sync_up(central, "S001", db)
    [conflict] = conflicts.list_open(central)
    assert (conflict.kind, conflict.subject, conflict.level) == (conflicts.STOCK, "S001/BAG", -2)
    assert [e["delta"] for e in conflict.detail["entries"]] == [5] + [-1] * 7
    with pytest.raises(Exception, match="must be one of adjust, accept"):
        conflicts.resolve(central, conflict.id, "write-off")
    conflicts.resolve(central, conflict.id, "adjust", note="delivery not booked")
    assert central.scalar("SELECT on_hand FROM stock_levels WHERE store_id = 'S001' AND sku = 'BAG'") == 0
    level = json.loads(central.scalar("SELECT data FROM changes WHERE kind = 'stock.level' ORDER BY seq DESC LIMIT 1"))
    assert (level["store_id"], level["sku"], level["on_hand"]) == ("S001", "BAG", 0)
    assert central.scalar("SELECT count(*) FROM sales WHERE store_id = 'S001' AND kind = 'refund'") == 1
    # The correcting entry reaches the store's own ledger through the feed, and only that store's.
    from tenpo.cloud.feed import changes_after
    from tenpo.edge.feed import apply_page

    for store_id, (_config, store_db) in stores.items():
        apply_page(store_db, store_id, changes_after(central, 0, 5000, store_id))
    assert ledger(db, "stock_ledger", "sku")["BAG"] == 0
    assert ledger(stores["S002"][1], "stock_ledger", "sku")["BAG"] == 5


def test_accepted_conflict_reopens_only_when_it_gets_worse(two_stores) -> None:
    central, stores = two_stores
    config, db = stores["S001"]
    for _ in range(6):
        commit_sale(db, config, SaleOrder((Scan("sku:BAG"),), payments=(Payment("card", 2000),)))
    sync_up(central, "S001", db)
    [conflict] = conflicts.list_open(central)
    conflicts.resolve(central, conflict.id, "accept", note="count next week")
    replica.adjust_stock(db, "BAG", 1, "found one")
    commit_sale(db, config, SaleOrder((Scan("sku:BAG"),), payments=(Payment("card", 2000),)))  # back to -1
    sync_up(central, "S001", db)
    assert conflicts.list_open(central) == []
    commit_sale(db, config, SaleOrder((Scan("sku:BAG"),), payments=(Payment("card", 2000),)))  # -2: worse
    sync_up(central, "S001", db)
    assert [c.level for c in conflicts.list_open(central)] == [-2]


def test_conflicts_command_lists_and_resolves(two_stores, central_url: str, capsys, monkeypatch) -> None:
    central, stores = two_stores
    for store_id, (config, db) in stores.items():
        commit_sale(db, config, BIG_REDEMPTION)
        sync_up(central, store_id, db)
    assert main(["cloud", "conflicts", "--db", central_url, "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["kind"] == "points-negative" and len(listed["detail"]["entries"]) == 2
    assert main(["cloud", "conflicts", "--db", central_url]) == 0
    assert f"#{listed['id']}" in capsys.readouterr().out
    ops = sign_in_as(monkeypatch, central_url, "ops", "operator")
    assert main(["cloud", "conflicts", "resolve", str(listed["id"]), "--action", "adjust", "--db", central_url, *ops]) == 1
    assert "must be one of write-off, accept" in capsys.readouterr().err
    assert main(["cloud", "conflicts", "resolve", str(listed["id"]), "--action", "write-off", "--note", "ok",
                 "--db", central_url, *ops]) == 0  # fmt: skip
    assert "resolved: write-off; posted points +982" in capsys.readouterr().out
    assert main(["cloud", "conflicts", "--db", central_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


# ---------------------------------------------------------------------------- the whole chain


def test_two_stores_offline_at_once_through_real_agents(tmp_path: Path, broker: Mosquitto, sqlite_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    central = Central(sqlite_url)
    (tmp_path / "products.csv").write_text(PRODUCTS_CSV, encoding="utf-8")
    import_products(central, tmp_path / "products.csv")
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    dbs, configs, agents = {}, {}, {}
    for store_id in ("S001", "S002"):
        path = provision_store(tmp_path / store_id, store_id, broker.url, sqlite_url)
        configs[store_id] = load_config(str(path))
        agents[store_id] = store_process(path).start()
        dbs[store_id] = edge_db.connect(configs[store_id].database)
    db_a, db_b = dbs["S001"], dbs["S002"]
    try:
        member_id = replica.register_member(db_a, "S001", name="佐藤 花子", phone="090-1234-5678")
        wait_until(lambda: replica.find_members(db_b, "09012345678"), 30, what="the member to reach Umeda")
        grant_points(central, member_id, GRANT)
        for db in dbs.values():  # the product list reaches each store through the feed
            wait_until(lambda db=db: db.conn.execute("SELECT count(*) FROM products WHERE sku IN ('TSHIRT-M', 'BAG')")
                       .fetchone()[0] == 2, 30, what="the products at each store")  # fmt: skip
            replica.adjust_stock(db, "TSHIRT-M", 3, "opening count")
            replica.adjust_stock(db, "BAG", 3, "opening count")
        wait_until(lambda: all((m := replica.get_member(d, member_id)) and m.points == GRANT for d in dbs.values()),
                   30, what="both stores to see 5,000 points")  # fmt: skip

        broker.stop()  # both stores offline at once
        order = SaleOrder(BIG_REDEMPTION.scans, member_id, 3000, BIG_REDEMPTION.payments)
        receipts = {s: commit_sale(dbs[s], configs[s], order).receipt_no for s in dbs}
        broker.start()

        for store_id, db in dbs.items():
            last = read_counter(db.conn, "outbox")
            wait_until(lambda store_id=store_id, last=last: central.scalar(
                           "SELECT last_applied_seq FROM stores WHERE store_id = ?", (store_id,)) == last,
                       30, what=f"HQ to apply {store_id}'s backlog")  # fmt: skip
        [conflict] = conflicts.list_open(central)
        assert {(e["store_id"], e["ref"]) for e in conflict.detail["entries"]} == set(receipts.items())
        for store_id, db in dbs.items():
            assert hq_sales_total(central, store_id) == store_sales_total(db) == 3980
            assert hq_ledger(central, "stock_ledger", "sku", store_id) == ledger(db, "stock_ledger", "sku")
            assert hq_ledger(central, "points_ledger", "member_id", store_id) == ledger(db, "points_ledger", "member_id")
        overspent = GRANT - 2 * (3000 - 9)
        assert conflict.level == overspent < 0
        wait_until(lambda: all(replica.get_member(d, member_id).points == overspent for d in dbs.values()), 30,
                   what="both stores to see the overspent balance")  # fmt: skip

        assert main(["cloud", "conflicts", "resolve", str(conflict.id), "--action", "write-off", "--db", sqlite_url,
                     *sign_in_as(monkeypatch, sqlite_url, "ops", "operator")]) == 0  # fmt: skip
        wait_until(lambda: all(replica.get_member(d, member_id).points == 0 for d in dbs.values()), 30,
                   what="the write-off to reach both stores")  # fmt: skip
        assert conflicts.list_open(central) == []
    finally:
        for agent in agents.values():
            agent.terminate()
        aggregator.terminate()
        central.close()
