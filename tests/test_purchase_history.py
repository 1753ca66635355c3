"""A member's whole purchase history reaches every store: a sale at another store and a web-shop order
show in the clerk's profile at the store she walks into (会員共通化)."""

from __future__ import annotations

import json
from pathlib import Path

from tenpo.cloud.admin import import_products
from tenpo.cloud.db import Central
from tenpo.cloud.members.imports import import_orders
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.checkout import Payment, Scan
from tenpo.edge.checkout.store import SaleOrder, commit_sale
from tenpo.edge.clerk.data import _purchase_history
from tenpo.edge.config import load_config
from tenpo.sandbox import aggregator_process, provision_store, store_process, wait_until

PRODUCTS = "sku,jan,name,price,tax_class\nTEA-500,4901085089583,緑茶 500ml,150,reduced\nBAG,,エコバッグ,500,standard\n"


def test_sales_elsewhere_and_web_orders_reach_the_clerk_at_every_store(tmp_path: Path, broker, sqlite_url) -> None:
    central = Central(sqlite_url)
    (tmp_path / "products.csv").write_text(PRODUCTS, encoding="utf-8")
    import_products(central, tmp_path / "products.csv")
    configs = {s: load_config(str(provision_store(tmp_path / s, s, broker.url, sqlite_url))) for s in ("S001", "S002")}
    aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    for config in configs.values():
        store_process(config.path).start()
    shibuya, umeda = (edge_db.connect(configs[s].database) for s in ("S001", "S002"))

    member_id = replica.register_member(shibuya, "S001", name="佐藤 花子", kana="サトウハナコ", phone="090-1234-5678")
    wait_until(lambda: replica.get_member(umeda, member_id), 30, what="the member at Umeda")
    sale = commit_sale(umeda, configs["S002"], SaleOrder((Scan("sku:BAG"),), member_id, payments=(Payment("cash", 500),)))
    order = {"order_id": "W-1001", "channel": "web", "ordered_at": "2026-11-20T12:00:00+09:00", "status": "paid",
             "customer": {"name": "佐藤 花子", "phone": "09012345678"}, "lines": [{"sku": "TEA-500", "qty": 2, "price": 150}]}
    (tmp_path / "orders.jsonl").write_text(json.dumps(order, ensure_ascii=False) + "\n", encoding="utf-8")
    report = import_orders(central, tmp_path / "orders.jsonl")
    assert report.counts()["created"] == 1

    def history() -> list[tuple[str, str, int, int]]:
        golden = [m.member_id for m in replica.find_members(shibuya, "090-1234-5678")]
        return _purchase_history(shibuya.conn, "S001", golden[0]) if golden else []

    wait_until(lambda: len(history()) == 2, 30, what="both purchases at Shibuya")
    rows = history()
    assert {(ref, total) for _, ref, total, _ in rows} == {(sale.receipt_no, 500), ("web:W-1001", 300)}
    assert rows[0][1] == sale.receipt_no, "newest first"
    central.close()
