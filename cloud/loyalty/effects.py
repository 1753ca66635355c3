"""What a store's ``points.entry`` means for loyalty at HQ, in the apply transaction.

The planner (called from tenpo.cloud.effects for every points.entry) keeps what the event said beyond the
ledger row: when it happened (its hybrid-logical time), a campaign's own last good day, and for an accrual
the rank, multiplier and base points it was earned at. A hook then, once the batch's rows are written:

- holds each new accrual against the rank HQ had sent that store when it sold (the sale's ``feed_cursor``
  in ``loyalty_rank_log``): points beyond base x that multiplier are taken back by an HQ ``adjustment``
  (``loyalty-excess:STORE:SEQ``), written once, audited;
- re-runs the member's lots as of the last expiry run: a redemption made before a lot's end that reached HQ
  after the expiry job gives back what that expiry took (docs/loyalty.md, the offline rule).
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from tenpo.cloud.changes import audit
from tenpo.cloud.db import Central
from tenpo.cloud.ledgers import points_entry
from tenpo.cloud.loyalty.store import HQ_STORE, correct_member, load_config
from tenpo.cloud.plan import ChangeTuple, Origin, PayloadError, Plan
from tenpo.shared.events import PointsEntry
from tenpo.shared.hlc import Hlc
from tenpo.shared.loyalty import allowed_accrual
from tenpo.shared.protocol import Event

log = logging.getLogger(__name__)

INSERT_META = (
    "INSERT INTO loyalty_points_meta(store_id, stream, store_seq, member_id, kind, delta, ref, at, expires_on, rank,"
    " multiplier_pct, base, checked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(store_id, stream, store_seq) DO NOTHING"
)
EXCESS_STREAM = "loyalty-excess"


def plan_points(plan: Plan, origin: Origin, event: Event, p: PointsEntry, now: float) -> None:
    """Add the entry's loyalty row and the member's loyalty hook to ``plan``."""
    if p.expires_on is not None:
        try:
            date.fromisoformat(p.expires_on)
        except ValueError:
            raise PayloadError(f"expires_on: {p.expires_on!r} is not a calendar date") from None
    millis = Hlc.unpack(event.hlc).millis if event.hlc > 0 else 0
    at = millis / 1000 if millis > 0 else now
    to_check = p.kind == "accrual" and p.multiplier_pct is not None and p.base is not None and p.delta > 0
    plan.add(INSERT_META, (origin.store_id, origin.stream, event.seq, p.member_id, p.kind, p.delta, p.ref, at,
                           p.expires_on, p.rank, p.multiplier_pct, p.base, 0 if to_check else 1))  # fmt: skip
    member_id = p.member_id
    plan.hooks[f"loyalty:{member_id}"] = lambda db, when: after_points(db, member_id, when)


def after_points(db: Central, member_id: str, now: float) -> list[ChangeTuple]:
    """Check new accruals and correct expiry for one member; never a reason to refuse the store's batch."""
    unchecked = db.all(
        "SELECT store_id, stream, store_seq, ref, delta, multiplier_pct, base FROM loyalty_points_meta"
        " WHERE member_id = ? AND checked = 0", (member_id,))  # fmt: skip
    golden = _golden(db, member_id)
    # Only a member some expiry already touched can need a correction now; the others' lots are the nightly
    # job's business (it runs as of a later day, with every entry that arrived meanwhile).
    expired_before = db.one("SELECT 1 FROM points_ledger WHERE member_id = ? AND kind = 'expiry' LIMIT 1",
                            (golden,)) is not None  # fmt: skip
    if not unchecked and not expired_before:
        return []
    db.execute("SAVEPOINT loyalty_hook")
    try:
        changes = _check_accruals(db, member_id, unchecked, now)
        if expired_before:
            changes += correct_member(db, golden, now)
    except Exception:  # loyalty is an improvement on the ledger, never a reason to lose a store's entries
        db.execute("ROLLBACK TO SAVEPOINT loyalty_hook")
        db.execute("RELEASE SAVEPOINT loyalty_hook")
        log.exception("loyalty check of member %s failed; the entries stand as the store sent them", member_id)
        return []
    db.execute("RELEASE SAVEPOINT loyalty_hook")
    return changes


def _golden(db: Central, member_id: str) -> str:
    found = db.scalar("SELECT member_id FROM member_aliases WHERE alias = ?", (member_id,))
    return str(found) if found else member_id


def rank_store_had(db: Central, member_id: str, cursor: int | None) -> tuple[str | None, int]:
    """The rank (and multiplier) of the last ``member.loyalty`` change at or below ``cursor`` (None: the
    newest); the first rank's multiplier when HQ had sent none."""
    sql = "SELECT rank, multiplier_pct FROM loyalty_rank_log WHERE member_id = ?"
    params: tuple[Any, ...] = (member_id,)
    if cursor is not None:
        sql += " AND change_seq <= ?"
        params += (cursor,)
    row = db.one(sql + " ORDER BY change_seq DESC LIMIT 1", params)
    if row is None:
        return None, load_config(db).ranks[0].multiplier_pct
    return str(row[0]), int(row[1])


def _check_accruals(db: Central, member_id: str, rows: list[tuple[Any, ...]], now: float) -> list[ChangeTuple]:
    golden = _golden(db, member_id)
    for store_id, stream, seq, ref, delta, claimed, base in rows:
        cursor = db.scalar("SELECT feed_cursor FROM sales WHERE store_id = ? AND stream = ? AND receipt_no = ?",
                           (store_id, stream, ref))  # fmt: skip
        if cursor is None:  # the sale is still on its way: what the store has read by now is the upper bound
            cursor = db.scalar("SELECT cursor FROM stores WHERE store_id = ?", (store_id,))
        rank, pct = rank_store_had(db, golden, None if cursor is None else int(cursor))
        allowed = allowed_accrual(int(base), min(int(claimed), pct))
        excess = int(delta) - allowed
        if excess > 0:
            excess_ref = f"loyalty-excess:{store_id}:{seq}"
            if db.one("SELECT 1 FROM points_ledger WHERE ref = ? AND member_id = ?", (excess_ref, golden)) is None:
                db.execute(*points_entry(member_id=golden, delta=-excess, kind="adjustment", ref=excess_ref,
                                         store_id=HQ_STORE, stream=EXCESS_STREAM, store_seq=0, at=now))  # fmt: skip
                audit(db, "aggregator", "loyalty.excess_accrual", golden,
                      {"store": store_id, "seq": int(seq), "receipt": ref, "delta": int(delta), "base": int(base),
                       "claimed_pct": int(claimed), "rank": rank, "allowed_pct": pct, "taken_back": excess})  # fmt: skip
                log.warning("store %s: accrual %d of member %s claims x%d%% (rank %s had x%d%%): %d taken back",
                            store_id, seq, golden, claimed, rank, pct, excess)  # fmt: skip
        db.execute("UPDATE loyalty_points_meta SET checked = 1 WHERE store_id = ? AND stream = ? AND store_seq = ?",
                   (store_id, stream, seq))  # fmt: skip
    return []
