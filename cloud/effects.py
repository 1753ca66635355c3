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
from tenpo.cloud.changes import new_beacon_secret
from tenpo.cloud.members.effects import FOLLOW_UPS as MEMBER_FOLLOW_UPS
from tenpo.cloud.members.effects import PLANNERS as MEMBERS
from tenpo.cloud.plan import Origin, PayloadError, Plan, Planner, dict_field, int_field, text_field
from tenpo.cloud.sales.effects import PLANNERS as SALES
from tenpo.cloud.visits.effects import PLANNERS as VISITS
from tenpo.shared.protocol import Event

MEMBER_FIELDS = ("name", "kana", "phone", "email", "card_no", "line_user_id", "home_store")

INSERT_MEMBER = (
    "INSERT INTO members(member_id, name, kana, phone, email, card_no, line_user_id, consent, custom, home_store,"
    " beacon_secret, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(member_id) DO NOTHING"
)
UPDATE_MEMBER = (
    "UPDATE members SET name = coalesce(?, name), kana = coalesce(?, kana), phone = coalesce(?, phone),"
    " email = coalesce(?, email), card_no = coalesce(?, card_no), line_user_id = coalesce(?, line_user_id),"
    " consent = coalesce(?, consent), custom = coalesce(?, custom), updated_at = ? WHERE member_id = ? AND erased = 0"
)
INSERT_STOCK = (
    "INSERT INTO stock_ledger(store_id, stream, sku, location, delta, reason, ref, store_seq, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_POINTS = (
    "INSERT INTO points_ledger(member_id, delta, kind, ref, store_id, stream, store_seq, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _member_registered(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    store_id = origin.store_id
    p = event.payload
    member_id = text_field(p, "member_id")
    assert member_id is not None
    if not member_id.startswith(f"{store_id}-"):
        raise PayloadError(f"member_id: {member_id} is not a provisional id of store {store_id}")
    values = tuple(text_field(p, key, required=False) for key in MEMBER_FIELDS)
    plan.add(
        INSERT_MEMBER,
        (member_id, *values[:6], dict_field(p, "consent") or "{}", dict_field(p, "custom") or "{}", values[6] or store_id,
         new_beacon_secret(), now, now),
    )
    plan.members_touched.add(member_id)


def _member_updated(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    p = event.payload
    member_id = text_field(p, "member_id")
    assert member_id is not None
    values = tuple(text_field(p, key, required=False) for key in MEMBER_FIELDS[:6])
    plan.add(UPDATE_MEMBER, (*values, dict_field(p, "consent"), dict_field(p, "custom"), now, member_id))
    plan.members_touched.add(member_id)


def _stock_moved(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    store_id = origin.store_id
    p = event.payload
    sku = text_field(p, "sku")
    delta = int_field(p, "delta")
    reason = text_field(p, "reason")
    location = text_field(p, "location", required=False) or "floor"
    plan.add(INSERT_STOCK, (store_id, origin.stream, sku, location, delta, reason, text_field(p, "ref", False), event.seq, now))
    plan.stock_touched.add((store_id, sku))  # type: ignore[arg-type]


def _points_entry(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    store_id = origin.store_id
    p = event.payload
    member_id = text_field(p, "member_id")
    delta = int_field(p, "delta")
    kind = text_field(p, "kind")
    plan.add(INSERT_POINTS, (member_id, delta, kind, text_field(p, "ref", False), store_id, origin.stream, event.seq, now))
    plan.points_touched.add(member_id)  # type: ignore[arg-type]


PLANNERS: dict[str, Planner] = {
    "member.registered": _member_registered,
    "member.updated": _member_updated,
    "stock.adjusted": _stock_moved,
    "stock.moved": _stock_moved,
    "points.entry": _points_entry,
}


def _register_area_planners() -> None:
    """Each area (sales, visits, inspections, members) owns the event types it defines."""
    for area in (SALES, VISITS, ASN, MEMBERS, AUDIT):
        overlap = set(area) & set(PLANNERS)
        assert not overlap, f"event types defined twice: {overlap}"
        PLANNERS.update(area)
    # An area may also follow up another's event type (members resolve a store's registration).
    FOLLOW_UPS.update(MEMBER_FOLLOW_UPS)


FOLLOW_UPS: dict[str, Planner] = {}  # run after the owning planner, on the same scratch plan


_register_area_planners()


def plan_event(plan: Plan, origin: Origin, event: Event, now: float | None = None) -> None:
    """Add the event's rows to ``plan``; raises PayloadError (nothing added) when it cannot apply."""
    planner = PLANNERS.get(event.type)
    if planner is None:
        raise PayloadError(f"unknown event type {event.type!r}")
    if event.schema != 1:
        raise PayloadError(f"{event.type}: unsupported schema version {event.schema}")
    scratch = Plan()
    planner(scratch, origin, event, now or time.time())
    follow_up = FOLLOW_UPS.get(event.type)
    if follow_up is not None:
        follow_up(scratch, origin, event, now or time.time())
    for sql, rows in scratch.rows.items():
        plan.rows.setdefault(sql, []).extend(rows)
    plan.stock_touched |= scratch.stock_touched
    plan.points_touched |= scratch.points_touched
    plan.members_touched |= scratch.members_touched
    plan.hooks.update(scratch.hooks)
