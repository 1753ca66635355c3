"""Merges reach the stores (issue 9): the replica rewrites every reference from the merged-away id to the
golden id, points combine, an unmerge moves the same rows back, and erasure reaches the store."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tenpo.cloud.admin import import_products
from tenpo.cloud.db import Central
from tenpo.cloud.members.imports import import_orders
from tenpo.cloud.members.privacy import erase_member
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.config import load_config
from tenpo.edge.feed import apply_page
from tenpo.edge.outbox import append_event, read_counter
from tenpo.sandbox import Mosquitto, aggregator_process, provision_store, store_process, wait_until
from tenpo.shared.protocol import Change, ChangePage


def local_points(db, member_id: str, delta: int, ref: str) -> None:
    """Points earned at the counter: the ledger row and its event in one transaction, as a sale writes them."""
    with edge_db.transaction(db) as conn:
        seq = append_event(conn, "points.entry", {"member_id": member_id, "delta": delta, "kind": "accrual", "ref": ref})
        conn.execute("INSERT INTO points_ledger(member_id, delta, kind, ref, store_seq, created_at) "
                     "VALUES (?, ?, 'accrual', ?, ?, ?)",
                     (member_id, delta, ref, seq, time.time()))  # fmt: skip
        # The sale behind the points, right after them: HQ applies no points without one (docs/authority.md).
        append_event(conn, "sale.completed", {
            "receipt_no": ref, "kind": "sale", "at": "2026-09-21T10:15:00+09:00", "member_id": member_id,
            "total": delta * 100, "rates": [{"rate": 10, "tax": delta * 100 // 11}], "stock_movements": [],
            "points_entries": [{"member_id": member_id, "kind": "accrue", "points": delta}], "points_earned": delta,
            "points_redeemed": 0,
        })  # fmt: skip


def page(db, *changes: tuple[str, str, dict]) -> None:
    cursor = read_counter(db.conn, "cursor")
    items = [Change(cursor + n, kind, key, data) for n, (kind, key, data) in enumerate(changes, 1)]
    apply_page(db, "S001", ChangePage(cursor, cursor + len(items), cursor + len(items), items))


def test_merge_rewrites_every_member_reference_and_unmerge_moves_them_back(tmp_path: Path) -> None:
    db = edge_db.connect(tmp_path / "store.db")
    # A table another area might add: found through the schema, not by name.
    db.execute("CREATE TABLE visits_demo (id INTEGER PRIMARY KEY, member_id TEXT REFERENCES members(member_id), at REAL)")
    provisional = replica.register_member(db, "S001", name="山田太郎", phone="090-1234-5678")
    local_points(db, provisional, 50, "R1")
    db.execute("INSERT INTO visits_demo(member_id, at) VALUES (?, 1)", (provisional,))

    page(db, ("member.merge", "G1", {"winner": "G1", "losers": [provisional], "merge_id": 1}),
         ("member.upsert", "G1", {"member_id": "G1", "name": "山田 太郎", "phone": "+819012345678", "version": 0}),
         ("points.balance", "G1", {"member_id": "G1", "balance": 30, "through": {"S001": 0}}))  # fmt: skip
    assert replica.get_member(db, provisional) is None
    member = replica.get_member(db, "G1")
    assert member is not None and member.name == "山田 太郎" and not member.provisional
    assert member.points == 80, "HQ's 30 from the web shop plus the store's 50 not yet at HQ"
    assert db.execute("SELECT member_id FROM visits_demo").fetchone()[0] == "G1"
    assert replica.find_members(db, "090-1234-5678")[0].member_id == "G1"

    page(db, ("member.unmerge", "G1", {"winner": "G1", "loser": provisional, "merge_id": 1}),
         ("member.upsert", provisional, {"member_id": provisional, "name": "山田太郎", "version": 0}))  # fmt: skip
    assert db.execute("SELECT member_id FROM visits_demo").fetchone()[0] == provisional
    assert db.execute("SELECT member_id FROM points_ledger").fetchone()[0] == provisional
    assert replica.get_member(db, provisional).name == "山田太郎"


def test_a_merge_for_an_unknown_member_changes_nothing(tmp_path: Path) -> None:
    db = edge_db.connect(tmp_path / "store.db")
    page(db, ("member.merge", "G9", {"winner": "G9", "losers": ["S002-x"], "merge_id": 4}))
    assert db.execute("SELECT count(*) FROM members").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0


def test_counter_member_and_web_order_become_one_member_in_the_store(tmp_path: Path, broker: Mosquitto,
                                                                     sqlite_url: str) -> None:
    products = tmp_path / "products.csv"
    products.write_text("sku,jan,name,price,tax_class\nA1,4901234567894,緑茶 500ml,150,reduced\n")
    central = Central(sqlite_url)
    import_products(central, products)
    config_path = provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url)
    config = load_config(str(config_path))
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    db = edge_db.connect(config.database)
    try:
        wait_until(lambda: db.execute("SELECT count(*) FROM products").fetchone()[0] == 1, 20, what="products at the store")
        orders = tmp_path / "orders.jsonl"
        orders.write_text(json.dumps({
            "order_id": "W-1", "channel": "web", "ordered_at": "2024-05-01T10:00:00+09:00",
            "customer": {"name": "山田 太郎", "kana": "やまだたろう", "email": "taro@example.jp", "phone": "090-1234-5678"},
            "lines": [{"sku": "A1", "qty": 20, "price": 150}]}, ensure_ascii=False) + "\n", encoding="utf-8")  # fmt: skip
        (row,) = import_orders(central, orders).rows
        golden = row.member_id
        wait_until(lambda: replica.get_member(db, golden) is not None, 20, what="the web customer at the store")

        provisional = replica.register_member(db, "S001", name="山田太郎", kana="ヤマダタロウ", phone="09012345678")
        local_points(db, provisional, 50, "R-1")
        wait_until(lambda: replica.get_member(db, provisional) is None, 20, what="the merge to reach the store")
        member = replica.get_member(db, golden)
        assert member.points == 80, "30 from the web order and 50 from the counter"
        assert [r[0] for r in db.execute("SELECT member_id FROM points_ledger")] == [golden]
        wait_until(lambda: central.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (golden,)) == 80, 20)
        wait_until(lambda: replica.sync_status(db)["outbox_pending"] == 0, 20, what="the store's events acknowledged")
        assert replica.get_member(db, golden).points == 80

        erase_member(central, golden, "the customer asked at the counter")
        wait_until(lambda: replica.get_member(db, golden) is None, 20, what="the erasure to reach the store")
        row = db.execute("SELECT name, phone, email, erased FROM members WHERE member_id = ?", (golden,)).fetchone()
        assert tuple(row) == (None, None, None, 1)
        assert db.execute("SELECT count(*) FROM members WHERE erased = 0").fetchone()[0] == 0
    finally:
        agent.terminate()
        aggregator.terminate()
        central.close()
