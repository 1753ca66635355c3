"""Points at the web checkout through the channel API, with real agents, a real aggregator and Mosquitto: a hold
lowers the balance every store sees at once; a hold racing a sale made while its store is offline ends in a
points-negative conflict at HQ and a refused capture, never a silent double spend; a capture becomes the order's
redemption and the order earns at the member's rank; holds nobody captures expire by the scheduled job."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta

import pytest

from tenpo.channel import ChannelError
from tenpo.cloud.channel.points import expire_holds
from tenpo.cloud.channel.service import ChannelDesk
from tenpo.cloud.db import Central
from tenpo.cloud.loyalty import store as loyalty
from tenpo.cloud.members.store import create_member
from tenpo.edge import replica
from tenpo.edge.checkout.errors import InsufficientPoints
from tenpo.edge.checkout.model import Payment, Scan
from tenpo.edge.checkout.store import SaleOrder, commit_sale, member_info
from tenpo.edge.outbox import read_counter
from tenpo.sandbox import wait_until
from tenpo.shared.channel_api import request_topic, response_topic
from tests.test_channel_support import Chain, chain, tenpo  # noqa: F401  (fixture)

PRICE = 1980  # UMBRELLA


def member_with_points(where: Chain, points: int) -> str:
    """A member registered at S001 with ``points`` granted at HQ; returns once S001 sees them."""
    db = where.db("S001")
    member = replica.register_member(db, "S001", name="佐藤 花子", kana="サトウハナコ")
    wait_until(lambda: where.central.scalar("SELECT 1 FROM members WHERE member_id = ?", (member,)), 30,
               what="the member at HQ")  # fmt: skip
    loyalty.grant(where.central, member, points, date.today() + timedelta(days=400), "campaign:welcome")
    store_sees(where, member, points)
    return member


def store_sees(where: Chain, member: str, balance: int, store_id: str = "S001") -> None:
    def sees() -> bool:
        conn = where.db(store_id).conn
        known = conn.execute("SELECT 1 FROM members WHERE member_id = ?", (member,)).fetchone()  # may still be on its way
        return known is not None and member_info(conn, member).points_balance == balance

    wait_until(sees, 30, what=f"{store_id} to see {balance} points")


def hq_balance(where: Chain, member: str) -> int:
    return int(where.central.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (member,), 0))


def sell(where: Chain, member: str, redeem: int) -> object:
    config = where.config("S001")
    order = SaleOrder((Scan("sku:UMBRELLA"),), member, redeem, (Payment("cash", PRICE - redeem),))
    return commit_sale(where.db("S001"), config, order)


def cli(where: Chain, *args: str) -> dict[str, object]:
    done = tenpo("channel", *args, "--json", "--broker", where.broker.url)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_hold_racing_an_offline_sale_is_a_conflict_at_hq_never_a_silent_double_spend(chain: Chain) -> None:  # noqa: F811 (imported fixture)
    chain.receive("S001", "UMBRELLA", 1)
    member = member_with_points(chain, 1000)
    chain.stop_store("S001")  # the store is offline from here: it last heard 1,000 points
    hold = cli(chain, "points", "hold", "--member", member, "--amount", "800", "--order", "W-1001", "--key", "W-1001-p")
    assert (hold["state"], hold["amount"], hold["balance"]) == ("held", 800, 200)
    assert cli(chain, "points", "balance", "--member", member) == {
        "member_id": member, "balance": 200, "held": 800, "rank": "レギュラー", "multiplier_pct": 100}  # fmt: skip

    sale = sell(chain, member, 500)  # offline: the store still believes 1,000, so it lets 500 go
    earned = sale.points_earned  # type: ignore[attr-defined]
    last = read_counter(chain.db("S001").conn, "outbox")
    chain.start_store("S001")
    wait_until(lambda: chain.central.scalar("SELECT last_applied_seq FROM stores WHERE store_id = 'S001'") == last,
               30, what="the offline sale at HQ")  # fmt: skip
    assert hq_balance(chain, member) == 1000 - 800 - 500 + earned < 0

    # HQ shows it: a points-negative conflict with the web hold and the store's redemption side by side.
    found = chain.central.one("SELECT detail FROM conflicts WHERE kind = 'points-negative' AND subject = ?"
                              " AND status = 'open'", (member,))  # fmt: skip
    assert found is not None, "the double spend is a conflict at HQ"
    spent = {(e["store_id"], e["delta"]) for e in json.loads(found[0])["entries"]}
    assert {("HQ", -800), ("S001", -500)} <= spent

    # The capture no longer has the points behind it: refused, the shop takes another tender.
    with chain.client() as web:
        with pytest.raises(ChannelError) as refused:
            web.points_capture(str(hold["hold_id"]), earn_on=PRICE)
        assert refused.value.code == "conflict" and "no longer covers" in refused.value.message
        released = web.points_release(str(hold["hold_id"]))
        assert released.state == "released" and released.balance == 1000 - 500 + earned
    assert chain.central.scalar("SELECT count(*) FROM points_ledger WHERE member_id = ? AND kind = 'redemption'"
                                " AND store_id = 'HQ'", (member,)) == 0, "the web order spent nothing"  # fmt: skip
    store_sees(chain, member, 1000 - 500 + earned)


def test_a_hold_lowers_what_every_store_may_redeem_and_a_capture_earns_at_the_rank(chain: Chain, tmp_path) -> None:  # noqa: F811 (imported fixture)
    (tmp_path / "loyalty.toml").write_text('[loyalty]\n[[loyalty.ranks]]\nname = "シルバー"\nthreshold = 0\n'
                                           "multiplier_pct = 150\n", encoding="utf-8")  # fmt: skip
    loyalty.set_config(chain.central, tmp_path / "loyalty.toml")
    chain.receive("S001", "UMBRELLA", 1)
    member = member_with_points(chain, 1000)
    with chain.client() as web:
        hold = web.points_hold(member, 600, order="W-2002", key="W-2002-points")
        assert hold.balance == 400
        assert web.points_hold(member, 600, order="W-2002", key="W-2002-points") == hold, "same key, same hold"
        with pytest.raises(ChannelError) as refused:
            web.points_hold(member, 500, order="W-2003")
        assert refused.value.code == "conflict" and "400" in refused.value.message
        store_sees(chain, member, 400)  # online stores hear it at once, S002 included
        store_sees(chain, member, 400, "S002")
        with pytest.raises(InsufficientPoints):
            sell(chain, member, 500)  # the held points cannot be spent at the counter

        captured = web.points_capture(hold.hold_id, earn_on=PRICE, key="W-2002-done")
        earned = PRICE * 150 // 10_000  # 1 point per ¥100 at x1.5
        assert (captured.state, captured.earned, captured.balance) == ("captured", earned, 400 + earned)
        assert web.points_capture(hold.hold_id, earn_on=PRICE, key="W-2002-done") == captured, "a retry"
        with pytest.raises(ChannelError) as twice:
            web.points_capture(hold.hold_id, key="another-key")
        assert twice.value.code == "conflict"
        with pytest.raises(ChannelError) as late:
            web.points_release(hold.hold_id)
        assert late.value.code == "conflict"
        with chain.client("app") as app:  # another channel's hold does not exist for it
            with pytest.raises(ChannelError) as other:
                app.points_release(hold.hold_id)
            assert other.value.code == "not_found"
    rows = chain.central.all("SELECT kind, delta, ref FROM points_ledger WHERE member_id = ? AND store_id = 'HQ'"
                             " AND kind <> 'adjustment' ORDER BY id", (member,))  # fmt: skip
    assert [tuple(r) for r in rows] == [("hold", -600, f"hold:{hold.hold_id}"), ("hold-release", 600, f"hold:{hold.hold_id}"),
                                        ("redemption", -600, "web:W-2002"), ("accrual", earned, "web:W-2002")]  # fmt: skip
    store_sees(chain, member, 400 + earned)


def test_holds_nobody_captures_expire_by_the_scheduled_job(chain: Chain) -> None:  # noqa: F811 (imported fixture)
    member = member_with_points(chain, 300)
    with chain.client() as web:
        hold = web.points_hold(member, 300, order="W-3003", hold_s=60)
        store_sees(chain, member, 0)
        assert expire_holds(chain.central, time.time()) == 0, "not yet"
        assert expire_holds(chain.central, time.time() + 120) == 1
        assert expire_holds(chain.central, time.time() + 120) == 0, "idempotent"
        assert web.points_balance(member).balance == 300
        with pytest.raises(ChannelError) as gone:
            web.points_capture(hold.hold_id)
        assert gone.value.code == "conflict" and "expired" in gone.value.message
        with pytest.raises(ChannelError) as unknown:
            web.points_balance("NOBODY-1")
        assert unknown.value.code == "not_found"
    store_sees(chain, member, 300)
    # The given-back points keep the last good day of the lot they came from: holding never extends them.
    lots = loyalty.member_lots(chain.central, member, date.today()).lots
    assert lots == [(date.today() + timedelta(days=400), 300)]


def _ask(desk: ChannelDesk, op: str, body: dict[str, object], channel: str = "web") -> dict[str, object]:
    out = desk.handle(request_topic(channel, op), json.dumps(body).encode(), response_topic(channel, "t1"), b"c")
    answer: dict[str, object] = json.loads(out[0].payload)
    return answer


def test_holds_captures_and_the_expiry_job_on_sqlite_and_postgresql(central_url: str) -> None:
    """The same SQL on both central stores: the advisory lock, counters, the ledger rows, the feed."""
    db = Central(central_url)
    with db.transaction():
        create_member(db, "G0000007", None, time.time())
    loyalty.grant(db, "G0000007", 1000, date.today() + timedelta(days=100), "campaign:test")
    desk = ChannelDesk(db)
    held = _ask(desk, "points-hold", {"key": "h1", "member": "G0000007", "amount": 700, "order": "W-9"})
    assert held["ok"] and held["result"]["balance"] == 300  # type: ignore[index]
    hold_id = held["result"]["hold_id"]  # type: ignore[index]
    sent = db.scalar("SELECT data FROM changes WHERE kind = 'points.balance' ORDER BY seq DESC LIMIT 1")
    assert json.loads(sent)["balance"] == 300, "the stores are sent the balance without the held points"
    assert _ask(desk, "points-hold", {"key": "h2", "member": "G0000007", "amount": 301, "order": "W-10"})["error"][
        "code"] == "conflict"  # type: ignore[index]  # fmt: skip
    assert _ask(desk, "points-hold", {"key": "h1", "member": "G0000007", "amount": 1, "order": "W-9"})["error"][
        "code"] == "conflict", "a used key for another request"  # type: ignore[index]  # fmt: skip
    bad = _ask(desk, "points-hold", {"key": "h3", "member": "G0000007", "amount": -5, "order": "W-11"})
    assert bad["error"]["code"] == "bad_request" and "amount" in bad["error"]["message"]  # type: ignore[index]
    captured = _ask(desk, "points-capture", {"key": "c1", "hold_id": hold_id, "earn_on": 5000})
    assert captured["result"]["state"] == "captured" and captured["result"]["balance"] == 350  # type: ignore[index]
    twice = _ask(desk, "points-earn", {"key": "e1", "member": "G0000007", "order": "W-9", "earn_on": 5000})
    assert twice["error"]["code"] == "conflict", "an order earns once"  # type: ignore[index]
    second = _ask(desk, "points-hold", {"key": "h4", "member": "G0000007", "amount": 350, "order": "W-12",
                                        "hold_s": 30})  # fmt: skip
    assert expire_holds(db, time.time() + 60) == 1
    assert _ask(desk, "points-balance", {"member": "G0000007"})["result"] == {  # type: ignore[index]
        "member_id": "G0000007", "balance": 350, "held": 0, "rank": "レギュラー", "multiplier_pct": 100}
    assert db.scalar("SELECT state FROM points_holds WHERE hold_id = ?", (second["result"]["hold_id"],)) == "expired"  # type: ignore[index]
    db.close()
