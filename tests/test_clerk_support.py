"""Shared set-up for the clerk terminal tests: a store with products, members, clerks (no tests here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tenpo.edge import db as edge_db
from tenpo.edge.clerk.app import ClerkApp
from tenpo.edge.clerk.data import ClerkData
from tenpo.edge.config import StoreConfig, load_config
from tenpo.edge.feed import _upsert_members, _upsert_products
from tenpo.edge.membership.sealing import open_payload
from tests.support.clerks import add_test_clerk

FIXED_NOW = 1_767_225_600.0  # 2026-01-01 09:00 JST
TEA, ONIGIRI, UMBRELLA = "4901085089583", "4901234567894", "4560000000029"
PRODUCTS = [
    {"sku": "TEA-500", "jan": TEA, "name": "緑茶 500ml", "price": 150, "tax_class": "reduced", "version": 1},
    {"sku": "ONIGIRI-S", "jan": ONIGIRI, "name": "おにぎり 鮭", "price": 160, "tax_class": "reduced", "version": 1},
    {"sku": "UMBRELLA", "jan": UMBRELLA, "name": "傘 65cm", "price": 1200, "tax_class": "standard", "version": 1},
    {"sku": "TSHIRT-M", "jan": "4560000000012", "name": "Tシャツ M 白", "price": 1980, "tax_class": "standard", "version": 1},
]
MEMBERS = [
    {"member_id": "M-0001", "name": "佐藤 花子", "kana": "サトウハナコ", "phone": "+819012345678", "card_no": "C100",
     "email": "hanako@example.jp", "points": 1200, "version": 1, "consent": {"marketing_email": True},
     "custom": {"tier": "gold", "好きな色": "青"}},
    {"member_id": "M-0002", "name": "鈴木 一郎", "kana": "スズキイチロウ", "phone": "+818011112222", "card_no": "C200",
     "points": 50, "version": 1, "custom": {"tier": "silver"}},
    {"member_id": "M-0003", "name": "Emma Smith", "kana": "エマスミス", "phone": "+817033334444", "card_no": "C300",
     "points": 0, "version": 1},
]  # fmt: skip
MANAGER, CLERK, PIN = "1001", "2001", "246813"


def make_store(root: Path, store_id: str = "S001") -> StoreConfig:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{store_id}.toml"
    path.write_text(
        f'[store]\nid = "{store_id}"\nname = "テンポ 渋谷店"\ndatabase = "{root / (store_id + ".db")}"\n'
        '[broker]\nurl = "mqtt://127.0.0.1:1"\n',
        encoding="utf-8",
    )
    config = load_config(str(path))
    db = edge_db.connect(config.database)
    with edge_db.transaction(db) as conn:
        _upsert_products(conn, store_id, PRODUCTS, None)
        _upsert_members(conn, store_id, MEMBERS, None)
    add_test_clerk(db, MANAGER, "山田 店長", "manager", PIN)
    add_test_clerk(db, CLERK, "田中 さくら", "clerk", PIN)
    db.conn.close()
    return config


def make_app(config: StoreConfig, clock: Any = None) -> ClerkApp:
    return ClerkApp(ClerkData(config, clock=clock) if clock else ClerkData(config))


async def settle(pilot: Any) -> None:
    """Let every worker finish and every message be handled."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def sign_in(pilot: Any, clerk_id: str = MANAGER, pin: str = PIN) -> None:
    await pilot.press(*clerk_id, "enter", *pin, "enter")
    await settle(pilot)


async def type_text(pilot: Any, text: str) -> None:
    await pilot.press(*text)
    await settle(pilot)


def outbox(config: StoreConfig, event_type: str) -> list[dict[str, Any]]:
    db = edge_db.connect(config.database)
    try:
        rows = db.conn.execute("SELECT id, payload FROM outbox WHERE type = ? ORDER BY seq", (event_type,)).fetchall()
        # An event carrying personal data rests sealed (issue 14): opened as the agent does before publishing.
        return [json.loads(open_payload(db.conn, event_id, payload)) for event_id, payload in rows]
    finally:
        db.conn.close()


def scalar(config: StoreConfig, sql: str, params: tuple[Any, ...] = ()) -> Any:
    db = edge_db.connect(config.database)
    try:
        return db.conn.execute(sql, params).fetchone()[0]
    finally:
        db.conn.close()
