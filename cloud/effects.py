"""What each upstream event does at HQ, as pure planning: event in, rows to write out.

Planning validates the payload before anything touches the database, so a bad event becomes a
dead letter with a reason while the rest of its batch still applies. Rows are grouped by statement
and written with executemany; the ledgers have no cross-table constraints, so order across groups
does not matter, and order within a group is the store's order.
"""

from __future__ import annotations

import time

from tenpo.cloud.asn.effects import PLANNERS as ASN
from tenpo.cloud.audit.effects import PLANNERS as AUDIT
from tenpo.cloud.authority import id_store
from tenpo.cloud.changes import new_beacon_secret
from tenpo.cloud.channel.deliveries import PLANNERS as DELIVERIES  # issue 18 §7: home delivery
from tenpo.cloud.channel.effects import FOLLOW_UPS as CHANNEL_FOLLOW_UPS  # issue 18: reservations
from tenpo.cloud.channel.effects import PLANNERS as CHANNEL
from tenpo.cloud.channel.member_app import after, plan_registered, plan_store_update  # issue 18 (H9)
from tenpo.cloud.ledgers import points_entry, stock_entry
from tenpo.cloud.loyalty.effects import plan_points as plan_loyalty_points
from tenpo.cloud.members.effects import FOLLOW_UPS as MEMBER_FOLLOW_UPS
from tenpo.cloud.members.effects import PLANNERS as MEMBERS
from tenpo.cloud.plan import Decoded, Origin, PayloadError, Plan, Planner, as_json, decode
from tenpo.cloud.sales.effects import PLANNERS as SALES
from tenpo.cloud.snapshots import PLANNERS as SNAPSHOTS
from tenpo.cloud.visits.effects import PLANNERS as VISITS
from tenpo.shared.events import MemberRegistered, MemberUpdated, PointsEntry, StockMoved
from tenpo.shared.protocol import Event

INSERT_MEMBER = (
    "INSERT INTO members(member_id, name, kana, phone, email, card_no, line_user_id, consent, custom, home_store,"
    " beacon_secret, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(member_id) DO NOTHING"
)
UPDATE_CUSTOM = "UPDATE members SET custom = ?, updated_at = ? WHERE member_id = ? AND erased = 0"


def _member_registered(plan: Plan, origin: Origin, event: Event, p: MemberRegistered, now: float) -> None:
    store_id = origin.store_id
    if id_store(p.member_id) != store_id:  # docs/authority.md: a store registers only under its own prefix
        raise PayloadError(f"member_id: {p.member_id} is not a provisional id of store {store_id}")
    plan.add(
        INSERT_MEMBER,
        (p.member_id, p.name, p.kana, p.phone, p.email, p.card_no, p.line_user_id, as_json(p.consent),
         as_json(p.custom), p.home_store or store_id, new_beacon_secret(), now, now),
    )  # fmt: skip
    plan.members_touched.add(p.member_id)


def _member_updated(plan: Plan, origin: Origin, event: Event, p: MemberUpdated, now: float) -> None:
    # issue 18 (H9): the contact fields and consent go field by field, the newest edit by hybrid logical clock
    # winning whatever order they arrive in (tenpo.cloud.channel.member_app, a follow-up after the members area's)
    if p.custom is not None:
        plan.add(UPDATE_CUSTOM, (as_json(p.custom), now, p.member_id))
    plan.members_touched.add(p.member_id)


def _stock_moved(plan: Plan, origin: Origin, event: Event, p: StockMoved, now: float) -> None:
    plan.add(*stock_entry(store_id=origin.store_id, stream=origin.stream, sku=p.sku, location=p.location,
                          delta=p.delta, reason=p.reason, ref=p.ref, store_seq=event.seq, at=now))  # fmt: skip
    plan.stock_touched.add((origin.store_id, p.sku))


def _points_entry(plan: Plan, origin: Origin, event: Event, p: PointsEntry, now: float) -> None:
    plan.add(*points_entry(member_id=p.member_id, delta=p.delta, kind=p.kind, ref=p.ref, store_id=origin.store_id,
                           stream=origin.stream, store_seq=event.seq, at=now))  # fmt: skip
    plan.points_touched.add(p.member_id)
    plan_loyalty_points(plan, origin, event, p, now)  # issue 17: when it happened, rank checks, expiry corrections


PLANNERS: dict[str, Planner] = {
    "member.registered": _member_registered,
    "member.updated": _member_updated,
    "stock.adjusted": _stock_moved,
    "stock.moved": _stock_moved,
    "points.entry": _points_entry,
}


def _register_area_planners() -> None:
    """Each area (sales, visits, inspections, members) owns the event types it defines."""
    for area in (SALES, VISITS, ASN, MEMBERS, AUDIT, SNAPSHOTS, CHANNEL, DELIVERIES):
        overlap = set(area) & set(PLANNERS)
        assert not overlap, f"event types defined twice: {overlap}"
        PLANNERS.update(area)
    # An area may also follow up another's event type (members resolve a store's registration).
    FOLLOW_UPS.update(MEMBER_FOLLOW_UPS)
    FOLLOW_UPS.update(CHANNEL_FOLLOW_UPS)  # a clerk's 取り置き becomes a reservation held at HQ
    # issue 18 (H9): profile edits by last writer wins, after the members area rebuilt the golden record
    FOLLOW_UPS["member.updated"] = after(FOLLOW_UPS.get("member.updated"), plan_store_update)
    FOLLOW_UPS["member.registered"] = after(FOLLOW_UPS.get("member.registered"), plan_registered)


FOLLOW_UPS: dict[str, Planner] = {}  # run after the owning planner, on the same scratch plan


_register_area_planners()


def plan_event(plan: Plan, origin: Origin, event: Event, now: float | None = None, decoded: Decoded | None = None) -> None:
    """Add the event's rows to ``plan``; raises PayloadError (nothing added) when it cannot apply.
    ``decoded``: the batch's payloads already decoded (plan.decode_each)."""
    payload = decoded.get(id(event)) if decoded is not None else None
    if payload is None:
        payload = decode(event)  # the catalogue knows every type and schema; PayloadError names the field
    planner = PLANNERS.get(event.type)
    if planner is None:
        raise PayloadError(f"unknown event type {event.type!r}")
    at = now or time.time()
    scratch = Plan()
    planner(scratch, origin, event, payload, at)
    follow_up = FOLLOW_UPS.get(event.type)
    if follow_up is not None:
        follow_up(scratch, origin, event, payload, at)
    for sql, rows in scratch.rows.items():
        plan.rows.setdefault(sql, []).extend(rows)
    plan.stock_touched |= scratch.stock_touched
    plan.points_touched |= scratch.points_touched
    plan.members_touched |= scratch.members_touched
    plan.hooks.update(scratch.hooks)
