"""Loyalty across the real link (store agent, Mosquitto, HQ aggregator): the rank HQ computes reaches the store,
an offline sale earns at it and HQ keeps those points; campaign points the store redeems offline on their last
day are never expired below zero, whichever of the store's redemption and HQ's expiry job comes first. The
clerk sees rank and expiring points on the member's profile, offline (Textual, 80x24)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from textual.widgets import Static

from tenpo.cloud.admin import import_products
from tenpo.cloud.db import Central
from tenpo.cloud.loyalty import store as loyalty
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.checkout.model import Payment, Scan
from tenpo.edge.checkout.store import SaleOrder, commit_sale, member_info
from tenpo.edge.clerk.members import ProfileScreen
from tenpo.edge.config import load_config
from tenpo.edge.loyalty import CHANGE_HANDLERS, standing
from tenpo.edge.outbox import read_counter
from tenpo.sandbox import Mosquitto, aggregator_process, provision_store, store_process, wait_until
from tenpo.shared.loyalty import jst_date
from tests.support.clerks import AS_CLERK, PIN_LINE, add_store_clerks
from tests.test_clerk_support import MANAGER, PIN, make_app, make_store, settle, sign_in

RANKS = """
[loyalty]
[[loyalty.ranks]]
name = "レギュラー"
threshold = 0
[[loyalty.ranks]]
name = "ゴールド"
threshold = 3000
multiplier_pct = 200
"""


@pytest.fixture
def chain(tmp_path: Path, broker: Mosquitto, sqlite_url: str):
    products = tmp_path / "products.csv"
    products.write_text("sku,jan,name,price,tax_class\nSHIRT,,Tシャツ M,1980,standard\nSOCKS,,靴下,500,standard\n")
    central = Central(sqlite_url)
    import_products(central, products)
    (tmp_path / "loyalty.toml").write_text(RANKS, encoding="utf-8")
    loyalty.set_config(central, tmp_path / "loyalty.toml")
    config_path = provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url)
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    config = load_config(str(config_path))
    db = edge_db.connect(config.database)
    wait_until(lambda: db.conn.execute("SELECT count(*) FROM products").fetchone()[0] == 2, 30, what="products")
    yield config, db, central
    agent.terminate()
    aggregator.terminate()
    db.conn.close()
    central.close()


def sell(config, db, member_id: str, *skus: str, redeem: int = 0) -> object:
    total = sum({"SHIRT": 1980, "SOCKS": 500}[s] for s in skus)
    return commit_sale(db, config, SaleOrder(tuple(Scan(f"sku:{s}") for s in skus), member_id, redeem,
                                             (Payment("cash", total - redeem),)))  # fmt: skip


def synced(db, central: Central) -> None:
    last = read_counter(db.conn, "outbox")
    wait_until(lambda: central.scalar("SELECT last_applied_seq FROM stores WHERE store_id = 'S001'") == last, 30,
               what="HQ to apply the store's events")  # fmt: skip


def hq_balance(central: Central, member_id: str) -> int:
    return int(central.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (member_id,), 0))


def test_an_offline_sale_earns_at_the_rank_hq_sent_and_hq_keeps_the_points(chain, broker: Mosquitto) -> None:
    config, db, central = chain
    member = replica.register_member(db, "S001", name="佐藤 花子", kana="サトウハナコ")
    sell(config, db, member, "SHIRT", "SHIRT")  # ¥3,960 at x1: 39 pt, and enough spend for ゴールド
    synced(db, central)
    today = jst_date(time.time())
    rows = {r.member_id: r for r in loyalty.run_ranks(central, today)}
    assert (rows[member].rank, rows[member].multiplier_pct) == ("ゴールド", 200)
    wait_until(lambda: standing(db.conn, member, 0).rank == "ゴールド", 30, what="the rank to reach the store")

    broker.stop()  # offline from here
    sale = sell(config, db, member, "SHIRT")  # ¥1,980: 19 pt at x1, 39 at x2 (rounded down once)
    assert sale.points_earned == 1980 * 2 // 100
    broker.start()
    synced(db, central)
    assert hq_balance(central, member) == 39 + 39, "HQ keeps what the store earned at the rank it had"
    assert central.scalar("SELECT count(*) FROM points_ledger WHERE ref LIKE ?", ("loyalty-excess%",)) == 0


@pytest.mark.parametrize("first", ["expiry job", "store's redemption"])
def test_campaign_points_redeemed_offline_on_their_last_day_never_go_below_zero(chain, broker: Mosquitto,
                                                                                  first: str) -> None:
    config, db, central = chain
    member = replica.register_member(db, "S001", name="鈴木 一郎", kana="スズキイチロウ")
    synced(db, central)
    today = jst_date(time.time())
    loyalty.grant(central, member, 300, today, "campaign:autumn")  # good through today only
    loyalty.run_ranks(central, today)  # the member's lots go down with the rank
    wait_until(lambda: member_info(db.conn, member).points_balance == 300 and standing(db.conn, member, 300).lots,
               30, what="the campaign points and their lot to reach the store")  # fmt: skip
    assert standing(db.conn, member, 300).lots == ((today, 300),)

    broker.stop()
    sale = sell(config, db, member, "SOCKS", redeem=300)  # offline, today: the lot is still good
    earned = sale.points_earned  # on the ¥200 paid in cash, good for a year
    tomorrow = today + timedelta(days=1)
    assert standing(db.conn, member, earned, now=time.time() + 86400).usable == earned
    if first == "expiry job":
        assert loyalty.run_expiry(central, tomorrow).expired == 300  # HQ has not seen the redemption yet
        assert hq_balance(central, member) == 0
        broker.start()
        synced(db, central)
    else:
        broker.start()
        synced(db, central)
        assert loyalty.run_expiry(central, tomorrow).expired == 0
    assert hq_balance(central, member) == earned, "the expiry never takes what the offline redemption used"
    assert central.scalar("SELECT count(*) FROM conflicts WHERE subject = ?", (member,)) == 0
    assert loyalty.run_expiry(central, tomorrow).expired == 0
    wait_until(lambda: member_info(db.conn, member).points_balance == earned, 30, what="the store to agree")


async def test_the_clerk_sees_rank_and_expiring_points_offline(tmp_path: Path) -> None:
    config = make_store(tmp_path / "S001")  # no broker at all: the replica is all there is
    db = edge_db.connect(config.database)
    with edge_db.transaction(db) as conn:
        CHANGE_HANDLERS["member.loyalty"](conn, "S001", [{
            "member_id": "M-0001", "rank": "ゴールド", "multiplier_pct": 200, "spend": 120000, "as_of": "2025-12-31",
            "lots": [{"expires_on": "2026-01-31", "points": 120}, {"expires_on": "2026-12-31", "points": 1080}]}], 7)
    db.conn.close()
    app = make_app(config, clock=lambda: 1_767_225_600.0)  # 2026-01-01 09:00 JST
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot, MANAGER, PIN)
        app.push_screen(ProfileScreen("M-0001"))
        await settle(pilot)
        head = str(app.screen.query_one("#profile-head", Static).render())
    assert "ゴールド x2" in head and "120 pt expire on 2026-01-31" in head


def test_member_find_shows_rank_and_expiring_points_offline(tmp_path: Path) -> None:
    config = make_store(tmp_path / "S001")
    add_store_clerks(config.database)
    soon, later = (jst_date(time.time()) + timedelta(days=d) for d in (20, 300))  # the command reads the clock
    db = edge_db.connect(config.database)
    with edge_db.transaction(db) as conn:
        CHANGE_HANDLERS["member.loyalty"](conn, "S001", [{
            "member_id": "M-0001", "rank": "シルバー", "multiplier_pct": 150, "as_of": "2026-11-30",
            "lots": [{"expires_on": soon.isoformat(), "points": 120}, {"expires_on": later.isoformat(), "points": 1080}]}],
            9)  # fmt: skip
    db.conn.close()
    cfg = ["--config", str(config.path)]
    found = subprocess.run([sys.executable, "-m", "tenpo", "edge", "member", "find", "C100", "--json", *cfg, *AS_CLERK],
                           input=PIN_LINE, capture_output=True, text=True)  # fmt: skip
    assert found.returncode == 0, found.stderr
    [member] = json.loads(found.stdout)
    assert member["loyalty"]["rank"] == "シルバー" and member["loyalty"]["multiplier_pct"] == 150
    assert member["loyalty"]["lots"][0] == {"expires_on": soon.isoformat(), "points": 120}
    text = subprocess.run([sys.executable, "-m", "tenpo", "edge", "member", "find", "C100", *cfg, *AS_CLERK],
                          input=PIN_LINE, capture_output=True, text=True)  # fmt: skip
    assert "シルバー x1.5" in text.stdout and f"120 pt expire on {soon.isoformat()}" in text.stdout
