"""Points at the web checkout (docs/channel.md, "Points"): balance, hold → capture | release, earn.

The rule: **the same points cannot be spent on the web and in a store at once.** A hold is a ledger entry
(kind ``hold``, HQ's stream ``channel-hold``) in the same transaction as the hold row, so every balance HQ
sends the stores (``points.balance``, whoever sends it) already has the held points taken off: a store that
hears of it cannot redeem them. A store that is offline may still redeem against the balance it last
heard; its redemption reaches HQ later, the balance goes below zero and HQ opens a ``points-negative``
conflict, as for two stores offline (tenpo.cloud.sales.conflicts) — never a silent double spend. The
capture then fails with ``conflict`` (the balance no longer covers it) and the shop takes another tender.

A capture turns the hold into the web order's ``redemption`` (ref ``web:ORDER``): a ``hold-release`` entry
gives the held points back and the redemption takes them, both dated when the hold was made. A release or
an expired hold only gives them back. Given-back points return as a lot ending on ``lot_end``, the last
good day of the soonest lot the hold took from, so holding and releasing never extends points' life.
Everything runs inside the caller's transaction unless it says otherwise.
"""

from __future__ import annotations

import logging
from typing import Any

from tenpo.cloud.changes import record_changes
from tenpo.cloud.channel.orders import record_purchase
from tenpo.cloud.db import Central
from tenpo.cloud.ledgers import points_entry
from tenpo.cloud.loyalty.store import HQ_STORE, load_config, member_lots
from tenpo.cloud.plan import ChangeTuple
from tenpo.cloud.sales.conflicts import points_balance_change
from tenpo.shared.channel_api import ChannelError
from tenpo.shared.channel_points import (
    EarnAnswer,
    HoldAnswer,
    PointsBalanceAnswer,
    PointsCaptureRequest,
    PointsEarnRequest,
    PointsHoldRequest,
    PointsReleaseRequest,
)
from tenpo.shared.loyalty import jst_date

log = logging.getLogger(__name__)

HOLD_STREAM = "channel-hold"  # the hold entry (-amount), store_seq = the hold's number
RELEASE_STREAM = "channel-release"  # the give-back (+amount) on capture, release or expiry
CAPTURE_STREAM = "channel-capture"  # the web order's redemption (-amount)
EARN_STREAM = "channel-earn"  # a web order's accrual, store_seq from counter points_earn
POINTS_PER_100_YEN = 1  # the chain's earn rate at x1 (docs/checkout.md's default); the rank multiplies it
COLUMNS = ("hold_id", "channel", "member_id", "amount", "order_ref", "state", "seq", "lot_end", "earned",
           "expires_at", "created_at", "updated_at")  # fmt: skip


def _lock(db: Central, member_id: str) -> None:
    """Serialise points writes of one member until commit (SQLite's write transaction already does)."""
    if db.dialect == "postgresql":
        db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"points/{member_id}",))


def _member(db: Central, member_id: str) -> str:
    """The live golden member for ``member_id`` (a merged-away id names its golden one); not_found otherwise."""
    golden = db.scalar("SELECT member_id FROM member_aliases WHERE alias = ?", (member_id,))
    found = str(golden) if golden else member_id
    if db.scalar("SELECT 1 FROM members WHERE member_id = ? AND erased = 0", (found,)) is None:
        raise ChannelError("not_found", f"no member {member_id}")
    return found


def balance(db: Central, member_id: str) -> int:
    return int(db.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (member_id,), 0))


def held(db: Central, member_id: str) -> int:
    return int(db.scalar("SELECT coalesce(sum(amount), 0) FROM points_holds WHERE member_id = ? AND state = 'held'",
                         (member_id,), 0))  # fmt: skip


def row(db: Central, hold_id: str, lock: bool = False) -> dict[str, Any] | None:
    found = db.one(f"SELECT {', '.join(COLUMNS)} FROM points_holds WHERE hold_id = ?"
                   + (db.lock_suffix() if lock else ""), (hold_id,))  # fmt: skip
    return None if found is None else dict(zip(COLUMNS, found))


def answer(db: Central, record: dict[str, Any]) -> HoldAnswer:
    return HoldAnswer(hold_id=record["hold_id"], member_id=record["member_id"], amount=int(record["amount"]),
                      state=record["state"], order=record["order_ref"], expires_at=float(record["expires_at"]),
                      earned=int(record["earned"]), balance=balance(db, record["member_id"]))  # fmt: skip


def own(db: Central, channel: str, hold_id: str, lock: bool = False) -> dict[str, Any]:
    record = row(db, hold_id, lock)
    if record is None or record["channel"] != channel:  # another channel's: as if it did not exist
        raise ChannelError("not_found", f"no points hold {hold_id} of channel {channel}")
    return record


def rank_of(db: Central, member_id: str) -> tuple[str | None, int]:
    found = db.one("SELECT rank, multiplier_pct FROM loyalty_members WHERE member_id = ?", (member_id,))
    if found is not None:
        return str(found[0]), int(found[1])
    first = load_config(db).ranks[0]
    return first.name, first.multiplier_pct


def lookup(db: Central, member_id: str) -> PointsBalanceAnswer:
    golden = _member(db, member_id)
    rank, pct = rank_of(db, golden)
    return PointsBalanceAnswer(member_id=golden, balance=balance(db, golden), held=held(db, golden), rank=rank,
                               multiplier_pct=pct)  # fmt: skip


def _next(db: Central, name: str) -> int:
    return int(db.scalar("INSERT INTO counters(name, value) VALUES (?, 1)"
                         " ON CONFLICT(name) DO UPDATE SET value = counters.value + 1 RETURNING value", (name,)))  # fmt: skip


def _give_back(db: Central, record: dict[str, Any], now: float) -> None:
    """The held points back to the member: a ``hold-release`` entry dated when the hold was made, its lot
    ending when the soonest lot the hold took from ended."""
    seq, member_id, amount = int(record["seq"]), record["member_id"], int(record["amount"])
    db.execute(*points_entry(member_id=member_id, delta=amount, kind="hold-release", ref=f"hold:{record['hold_id']}",
                             store_id=HQ_STORE, stream=RELEASE_STREAM, store_seq=seq, at=now))  # fmt: skip
    db.execute("INSERT INTO loyalty_points_meta(store_id, stream, store_seq, member_id, kind, delta, ref, at,"
               " expires_on, checked) VALUES (?, ?, ?, ?, 'hold-release', ?, ?, ?, ?, 1)",
               (HQ_STORE, RELEASE_STREAM, seq, member_id, amount, f"hold:{record['hold_id']}",
                float(record["created_at"]), record["lot_end"]))  # fmt: skip


def _moved(db: Central, record: dict[str, Any], to: str, now: float, earned: int = 0) -> dict[str, Any]:
    db.execute("UPDATE points_holds SET state = ?, earned = ?, updated_at = ? WHERE hold_id = ? AND state = 'held'",
               (to, earned, now, record["hold_id"]))  # fmt: skip
    return {**record, "state": to, "earned": earned, "updated_at": now}


def hold(db: Central, channel: str, request: PointsHoldRequest, now: float) -> tuple[HoldAnswer, list[ChangeTuple]]:
    member_id = _member(db, request.member)
    _lock(db, member_id)
    have = balance(db, member_id)
    if request.amount > have:
        raise ChannelError("conflict", f"member {member_id} has {max(have, 0)} points to spend, not {request.amount}")
    lots = member_lots(db, member_id, jst_date(now)).lots
    seq = _next(db, "points_hold")
    hold_id = f"P{seq:08d}"
    record = {"hold_id": hold_id, "channel": channel, "member_id": member_id, "amount": request.amount,
              "order_ref": request.order, "state": "held", "seq": seq,
              "lot_end": lots[0][0].isoformat() if lots else None, "earned": 0,
              "expires_at": now + request.hold_s, "created_at": now, "updated_at": now}  # fmt: skip
    db.execute(f"INSERT INTO points_holds({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
               tuple(record[c] for c in COLUMNS))  # fmt: skip
    db.execute(*points_entry(member_id=member_id, delta=-request.amount, kind="hold", ref=f"hold:{hold_id}",
                             store_id=HQ_STORE, stream=HOLD_STREAM, store_seq=seq, at=now))  # fmt: skip
    return answer(db, record), [points_balance_change(db, member_id)]


def _earn(db: Central, member_id: str, order: str, yen: int, now: float) -> tuple[int, str | None, int]:
    """A web order's accrual at the member's rank (HQ's ``accrual`` entry, ref ``web:ORDER``)."""
    if db.one("SELECT 1 FROM points_ledger WHERE member_id = ? AND kind = 'accrual' AND ref = ? AND store_id = ?",
              (member_id, f"web:{order}", HQ_STORE)) is not None:  # fmt: skip
        raise ChannelError("conflict", f"web order {order} has already earned points")
    rank, pct = rank_of(db, member_id)
    points = yen * POINTS_PER_100_YEN * pct // 10_000
    if points > 0:
        db.execute(*points_entry(member_id=member_id, delta=points, kind="accrual", ref=f"web:{order}",
                                 store_id=HQ_STORE, stream=EARN_STREAM, store_seq=_next(db, "points_earn"),
                                 at=now))  # fmt: skip
    return points, rank, pct


def capture(db: Central, channel: str, request: PointsCaptureRequest,
            now: float) -> tuple[HoldAnswer, list[ChangeTuple]]:  # fmt: skip
    record = own(db, channel, request.hold_id)
    _lock(db, record["member_id"])
    record = own(db, channel, request.hold_id, lock=True)
    if record["state"] != "held":
        raise ChannelError("conflict", f"points hold {request.hold_id} is {record['state']}: nothing to capture")
    member_id = record["member_id"]
    left = balance(db, member_id)  # the hold is already taken off: below zero, someone spent its points
    if left < 0:
        raise ChannelError("conflict", f"the balance no longer covers points hold {request.hold_id}: member "
                           f"{member_id} is at {left} with it (a store redeemed the same points offline); "
                           "take another tender and release the hold")  # fmt: skip
    _give_back(db, record, now)
    seq = int(record["seq"])
    db.execute(*points_entry(member_id=member_id, delta=-int(record["amount"]), kind="redemption",
                             ref=f"web:{record['order_ref']}", store_id=HQ_STORE, stream=CAPTURE_STREAM,
                             store_seq=seq, at=now))  # fmt: skip
    db.execute("INSERT INTO loyalty_points_meta(store_id, stream, store_seq, member_id, kind, delta, ref, at,"
               " checked) VALUES (?, ?, ?, ?, 'redemption', ?, ?, ?, 1)",
               (HQ_STORE, CAPTURE_STREAM, seq, member_id, -int(record["amount"]), f"web:{record['order_ref']}",
                float(record["created_at"])))  # fmt: skip
    earned = _earn(db, member_id, record["order_ref"], request.earn_on, now)[0] if request.earn_on else 0
    record = _moved(db, record, "captured", now, earned)
    # The order is a purchase (rank spend, analytics): the points tendered plus the yen paid otherwise.
    bought = record_purchase(db, channel, member_id, record["order_ref"], int(record["amount"]) + request.earn_on,
                             earned, now)  # fmt: skip
    return answer(db, record), [points_balance_change(db, member_id), *bought]


def release(db: Central, channel: str, request: PointsReleaseRequest,
            now: float) -> tuple[HoldAnswer, list[ChangeTuple]]:  # fmt: skip
    _lock(db, own(db, channel, request.hold_id)["member_id"])
    record = own(db, channel, request.hold_id, lock=True)
    if record["state"] == "captured":
        raise ChannelError("conflict", f"points hold {request.hold_id} is captured: refund the order instead")
    if record["state"] != "held":  # released or expired already: the points are back
        return answer(db, record), []
    _give_back(db, record, now)
    record = _moved(db, record, "released", now)
    return answer(db, record), [points_balance_change(db, record["member_id"])]


def earn(db: Central, channel: str, request: PointsEarnRequest, now: float) -> tuple[EarnAnswer, list[ChangeTuple]]:
    member_id = _member(db, request.member)
    _lock(db, member_id)
    points, rank, pct = _earn(db, member_id, request.order, request.earn_on, now)
    result = EarnAnswer(member_id=member_id, order=request.order, earned=points, rank=rank, multiplier_pct=pct,
                        balance=balance(db, member_id))  # fmt: skip
    bought = record_purchase(db, channel, member_id, request.order, request.earn_on, points, now)
    return result, ([points_balance_change(db, member_id)] if points else []) + bought


def expire_holds(db: Central, now: float, limit: int = 500) -> int:
    """The scheduled job: holds past ``expires_at`` give their points back. Its own transaction;
    idempotent (each hold moves once), so several aggregators may run it."""
    with db.transaction():
        due = db.all("SELECT hold_id, member_id FROM points_holds WHERE state = 'held' AND expires_at < ?"
                     " ORDER BY expires_at LIMIT ?", (now, limit))  # fmt: skip
        changes: list[ChangeTuple] = []
        for hold_id, member_id in due:
            _lock(db, member_id)  # member first, then the row: the order capture and release take them in
            record = row(db, hold_id, lock=True)
            if record is None or record["state"] != "held":
                continue
            _give_back(db, record, now)
            _moved(db, record, "expired", now)
            changes.append(points_balance_change(db, record["member_id"]))
        record_changes(db, changes, now)
    if due:
        log.info("points holds: %d expired", len(due))
    return len(due)
