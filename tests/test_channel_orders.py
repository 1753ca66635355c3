"""Web orders through the channel API are purchases (issue 18 §4), with real agents, a real aggregator and
Mosquitto: a captured order earns at the member's rank, counts once towards the rolling rank spend however the
shop retries, lifts the member across a threshold at the rank job, and the new rank reaches the store; RFM
monetary counts it; the store's purchase history lists it."""

from __future__ import annotations

import json
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest

from tenpo.channel import ChannelError
from tenpo.cloud.admin import add_store
from tenpo.cloud.analytics.config import AnalyticsConfig
from tenpo.cloud.analytics.job import refresh
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.channel.service import ChannelDesk
from tenpo.cloud.db import Central
from tenpo.cloud.loyalty import store as loyalty
from tenpo.edge.loyalty import standing
from tenpo.sandbox import wait_until
from tenpo.shared import crypto
from tenpo.shared.protocol import Event, EventBatch
from tests.test_channel_points import _ask, member_with_points
from tests.test_channel_support import Chain, chain  # noqa: F401  (fixture)

RANKS = ('[loyalty]\n[[loyalty.ranks]]\nname = "レギュラー"\nthreshold = 0\n[[loyalty.ranks]]\nname = "シルバー"\n'
         "threshold = 5000\nmultiplier_pct = 150\n")  # fmt: skip


def order_total(where: Chain, order: str) -> int | None:
    value = where.central.scalar("SELECT total FROM member_orders WHERE order_id = ? AND channel = 'web'", (order,))
    return None if value is None else int(value)


def test_a_web_order_counts_once_towards_rank_spend_and_the_new_rank_reaches_the_store(chain: Chain, tmp_path) -> None:  # noqa: F811 (imported fixture)
    (tmp_path / "loyalty.toml").write_text(RANKS, encoding="utf-8")
    loyalty.set_config(chain.central, tmp_path / "loyalty.toml")
    member = member_with_points(chain, 1000)
    today = loyalty.today_jst()
    assert loyalty.spend_by_member(chain.central, today, loyalty.load_config(chain.central)).get(member, 0) == 0

    with chain.client() as web:
        hold = web.points_hold(member, 500, order="W-5001", key="W-5001-points")
        captured = web.points_capture(hold.hold_id, earn_on=4200, key="W-5001-done")
        assert captured.earned == 4200 // 100, "at レギュラー x1"
        # The shop retries after a timeout, and a confused backend asks to earn on the order again.
        assert web.points_capture(hold.hold_id, earn_on=4200, key="W-5001-done") == captured
        with pytest.raises(ChannelError) as again:
            web.points_earn(member, order="W-5001", earn_on=4200, key="W-5001-earn")
        assert again.value.code == "conflict"
    assert order_total(chain, "W-5001") == 500 + 4200, "points tendered and yen paid, once"
    config = loyalty.load_config(chain.central)
    assert loyalty.spend_by_member(chain.central, today, config)[member] == 4700

    # Below the threshold: the rank job keeps レギュラー. A second web order (earn only) takes it over 5,000.
    assert {r.member_id: r.rank for r in loyalty.run_ranks(chain.central, today)}[member] == "レギュラー"
    with chain.client() as web:
        earned = web.points_earn(member, order="W-5002", earn_on=980, key="W-5002-earn")
        assert (earned.earned, earned.rank) == (9, "レギュラー")
    assert loyalty.spend_by_member(chain.central, today, config)[member] == 5680
    rows = {r.member_id: r for r in loyalty.run_ranks(chain.central, today)}
    assert (rows[member].rank, rows[member].spend, rows[member].previous) == ("シルバー", 5680, "レギュラー")

    # The store hears the new rank through the feed, and the next web order earns at it.
    conn = chain.db("S001").conn
    wait_until(lambda: standing(conn, member, 0).rank == "シルバー", 30, what="シルバー at S001")
    assert standing(conn, member, 0).multiplier_pct == 150
    with chain.client() as web:
        assert web.points_earn(member, order="W-5003", earn_on=2000, key="W-5003-earn").earned == 2000 * 150 // 10_000

    # The store's history of the member lists the web orders, each once, at what HQ counted.
    wait_until(lambda: conn.execute("SELECT count(*) FROM member_purchases WHERE member_id = ? AND channel = 'web'",
                                    (member,)).fetchone()[0] == 3, 30, what="the web orders at S001")  # fmt: skip
    assert conn.execute("SELECT total FROM member_purchases WHERE purchase_id = 'web:W-5001'").fetchone()[0] == 4700

    # Analytics sees the same purchases: RFM monetary over every channel.
    refresh(chain.central, AnalyticsConfig(), send=False, now=time.time())
    monetary, frequency = chain.central.one("SELECT monetary, frequency FROM analytics_members WHERE customer = ?",
                                            (member,))  # fmt: skip
    assert (int(monetary), int(frequency)) == (4700 + 980 + 2000, 3)


def test_web_orders_are_purchases_once_on_sqlite_and_postgresql(central_url: str, tmp_path: Path) -> None:
    """The same SQL on both central stores: the order row's upsert, its member's source record, the feed entry."""
    db = Central(central_url)
    crypto.generate_keypair(tmp_path / "S001.key", tmp_path / "S001.pub")
    add_store(db, "S001", crypto.public_key_pem(crypto.load_private_key(tmp_path / "S001.key")))
    person = {"member_id": "S001-000001", "name": "山田 花子"}  # registered at S001: its own store source record
    registered = Event(1, uuid.uuid4().hex, "member.registered", 1, 1, person)
    apply_batch(db, "S001", EventBatch("stream-S001", [registered]))
    member = str(db.scalar("SELECT member_id FROM member_sources WHERE source = 'store'"))
    loyalty.grant(db, member, 1000, date.today() + timedelta(days=100), "campaign:test")
    desk = ChannelDesk(db)
    held = _ask(desk, "points-hold", {"key": "h1", "member": member, "amount": 300, "order": "W-1"})
    capture = {"key": "c1", "hold_id": held["result"]["hold_id"], "earn_on": 1200}  # type: ignore[index]
    assert _ask(desk, "points-capture", capture)["ok"]
    assert _ask(desk, "points-capture", capture)["ok"], "a retry with its key: answered from memory"
    assert _ask(desk, "points-earn", {"key": "e1", "member": member, "order": "W-2", "earn_on": 800})["ok"]
    assert _ask(desk, "points-earn", {"key": "e2", "member": member, "order": "W-2", "earn_on": 800})["error"][
        "code"] == "conflict"  # type: ignore[index]  # fmt: skip
    rows = db.all("SELECT order_id, channel, source, source_id, status, total, points FROM member_orders"
                  " ORDER BY order_id")  # fmt: skip
    assert [tuple(r) for r in rows] == [("W-1", "web", "store", member, "paid", 1500, 12),
                                        ("W-2", "web", "store", member, "paid", 800, 8)]  # fmt: skip
    spend = loyalty.spend_by_member(db, loyalty.today_jst(), loyalty.load_config(db))
    assert spend[member] == 2300
    sent = [json.loads(d) for (d,) in db.all("SELECT data FROM changes WHERE kind = 'purchase.recorded' ORDER BY seq")]
    assert [(s["purchase_id"], s["member_id"], s["total"], s["points"]) for s in sent] == [
        ("web:W-1", member, 1500, 12), ("web:W-2", member, 800, 8)]  # fmt: skip
    db.close()
