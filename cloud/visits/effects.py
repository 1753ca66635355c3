"""HQ planners for the beacon events a store reports (edge/ble/store.py writes them).

Rows are keyed by the store's own ids, and every statement commutes with the others for the same
id (an arrival never overwrites a departure; a departure carries the arrival time too), so the
order in which a batch's statement groups run does not matter.
"""

from __future__ import annotations

from tenpo.cloud.plan import Origin, PayloadError, Plan, Planner
from tenpo.shared.events import CouponTriggered, VisitArrived, VisitLeft, ZoneEntered, ZoneLeft
from tenpo.shared.protocol import Event

# Times are bounded by the catalogue (tenpo.shared.events.UnixTime: wall-clock readings, 2000..2100).
_CLOCK_SLACK_S = 1.0  # rounding between a stay's ends and its dwell

ARRIVED = (
    "INSERT INTO visits(store_id, visit_id, member_id, arrived_at, recorded_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(store_id, visit_id) DO NOTHING"
)
LEFT = (
    "INSERT INTO visits(store_id, visit_id, member_id, arrived_at, left_at, dwell_s, interrupted, recorded_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(store_id, visit_id) DO UPDATE SET left_at = excluded.left_at,"
    " dwell_s = excluded.dwell_s, interrupted = excluded.interrupted"
)
ZONE_ENTERED = (
    "INSERT INTO zone_stays(store_id, stay_id, zone, subject_kind, subject_id, member_id, entered_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(store_id, stay_id) DO NOTHING"
)
ZONE_LEFT = (
    "INSERT INTO zone_stays(store_id, stay_id, zone, subject_kind, subject_id, member_id, entered_at, left_at, dwell_s)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(store_id, stay_id) DO UPDATE SET left_at = excluded.left_at,"
    " dwell_s = excluded.dwell_s"
)
COUPON = (
    "INSERT INTO coupons(store_id, coupon_id, member_id, rule, visit_id, triggered_at, recorded_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(store_id, coupon_id) DO NOTHING"
)


def _dwell(dwell_s: float, since: float, until: float) -> float:
    """The catalogue bounds each value; the stay's ends and its dwell must also agree."""
    if until < since - _CLOCK_SLACK_S:
        raise PayloadError("left_at: earlier than the arrival")
    if abs((until - since) - dwell_s) > _CLOCK_SLACK_S:
        raise PayloadError(f"dwell_s: {dwell_s} does not match the stay's ends ({until - since:.3f} s)")
    return dwell_s


def _same_store(store: str | None, origin: Origin) -> None:
    if store is not None and store != origin.store_id:
        raise PayloadError(f"store: {store!r} is not the sending store {origin.store_id!r}")


def _subject(p: ZoneEntered | ZoneLeft) -> None:
    if p.subject_kind == "member" and p.member_id != p.subject_id:
        raise PayloadError("member_id: must equal subject_id for a member")
    if p.subject_kind == "beacon" and p.member_id is not None:
        raise PayloadError("member_id: a zone beacon is not a member")


def _visit_arrived(plan: Plan, origin: Origin, event: Event, p: VisitArrived, now: float) -> None:
    _same_store(p.store, origin)
    plan.add(ARRIVED, (origin.store_id, p.visit_id, p.member_id, p.arrived_at, now))


def _visit_left(plan: Plan, origin: Origin, event: Event, p: VisitLeft, now: float) -> None:
    _same_store(p.store, origin)
    dwell = _dwell(p.dwell_s, p.arrived_at, p.left_at)
    plan.add(LEFT, (origin.store_id, p.visit_id, p.member_id, p.arrived_at, p.left_at, dwell, int(p.interrupted), now))


def _zone_entered(plan: Plan, origin: Origin, event: Event, p: ZoneEntered, now: float) -> None:
    _same_store(p.store, origin)
    _subject(p)
    plan.add(ZONE_ENTERED, (origin.store_id, p.stay_id, p.zone, p.subject_kind, p.subject_id, p.member_id, p.entered_at))


def _zone_left(plan: Plan, origin: Origin, event: Event, p: ZoneLeft, now: float) -> None:
    _same_store(p.store, origin)
    _subject(p)
    dwell = _dwell(p.dwell_s, p.entered_at, p.left_at)
    plan.add(ZONE_LEFT, (origin.store_id, p.stay_id, p.zone, p.subject_kind, p.subject_id, p.member_id, p.entered_at,
                         p.left_at, dwell))  # fmt: skip


def _coupon_triggered(plan: Plan, origin: Origin, event: Event, p: CouponTriggered, now: float) -> None:
    _same_store(p.store, origin)
    plan.add(COUPON, (origin.store_id, p.coupon_id, p.member_id, p.rule, p.visit_id, p.triggered_at, now))


PLANNERS: dict[str, Planner] = {
    "visit.arrived": _visit_arrived,
    "visit.left": _visit_left,
    "zone.entered": _zone_entered,
    "zone.left": _zone_left,
    "coupon.triggered": _coupon_triggered,
}
