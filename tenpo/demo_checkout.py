"""Demo scenario (issue 5): the network goes down, Shibuya keeps selling to its member, and once the
link is back HQ has every sale and her new points balance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenpo.edge import replica
from tenpo.edge.checkout import Payment, Scan
from tenpo.edge.checkout.store import SaleOrder, commit_sale, load_sale
from tenpo.edge.config import load_config

if TYPE_CHECKING:
    from tenpo.demo import Demo

STORE = "S001"
PHONE = "090-1234-5678"


def run(demo: Demo) -> None:
    assert demo.broker is not None and demo.central is not None
    central, db = demo.central, demo.dbs[STORE]
    config = load_config(str(demo.config_paths[STORE]))
    [member] = replica.find_members(db, PHONE)

    demo.step("Shibuya's morning delivery is booked (tea and rice balls)")
    replica.adjust_stock(db, "TEA-500", 24, "morning delivery")
    replica.adjust_stock(db, "ONIGIRI-S", 12, "morning delivery")
    demo.check("HQ has applied everything Shibuya wrote so far", lambda: _applied(demo) == _written(db))

    demo.step("Network outage: the broker is down; Shibuya keeps selling on the Tenpo box")
    demo.broker.stop()
    first = commit_sale(db, config, SaleOrder(
        (Scan("sku:TSHIRT-M"), Scan("4901085089583")), member.member_id, payments=(Payment("card", 2130),)))  # fmt: skip
    second = commit_sale(db, config, SaleOrder(
        (Scan("4901234567894"), Scan("4901234567894"), Scan("4901085089583")), member.member_id,
        redeem_points=20, payments=(Payment("cash", 500),)))  # fmt: skip
    points_now = replica.get_member(db, member.member_id).points  # type: ignore[union-attr]
    demo.say(f"    {first.receipt_no}: ¥{first.total:,} by card, +{first.points_earned} pt")
    demo.say(f"    {second.receipt_no}: ¥{second.total:,}, {second.points_redeemed} pt redeemed, "
             f"+{second.points_earned} pt; she now has {points_now} pt")  # fmt: skip
    demo.say(f"    outbox holds {replica.sync_status(db)['outbox_pending']} events for HQ")
    stored = load_sale(db, STORE, second.receipt_no)
    assert stored is not None
    for line in stored.receipt.rstrip("\n").splitlines():
        demo.say(f"    | {line}")

    demo.step("The network is back: HQ receives the sales and the points")
    demo.broker.start()
    demo.check("HQ applied every event Shibuya wrote offline", lambda: _applied(demo) == _written(db))
    receipts = {first.receipt_no, second.receipt_no}
    demo.check("both sales are in HQ's sales table", lambda: receipts <= {
        r[0] for r in central.all("SELECT receipt_no FROM sales WHERE store_id = ?", (STORE,))})  # fmt: skip
    balance = demo.check(f"HQ shows her {points_now} points",
                         lambda: _hq_points(demo, member.member_id) == points_now and points_now)  # fmt: skip
    total = central.scalar("SELECT sum(total) FROM sales WHERE store_id = ?", (STORE,), 0)
    demo.say(f"    HQ: Shibuya sales ¥{int(total):,}, member {member.member_id} balance {balance} pt")


def _written(db) -> int:  # type: ignore[no-untyped-def]
    return int(replica.sync_status(db)["last_seq"])


def _applied(demo: Demo) -> int:
    assert demo.central is not None
    return int(demo.central.scalar("SELECT last_applied_seq FROM stores WHERE store_id = ?", (STORE,), 0))


def _hq_points(demo: Demo, member_id: str) -> int:
    assert demo.central is not None
    return int(demo.central.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (member_id,), 0))
