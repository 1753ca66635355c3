"""HQ planners for the beacon events a store reports (edge/ble/store.py writes them).

Rows are keyed by the store's own ids, and every statement commutes with the others for the same
id (an arrival never overwrites a departure; a departure carries the arrival time too), so the
order in which a batch's statement groups run does not matter.
"""

from __future__ import annotations

import math
from typing import Any

from tenpo.cloud.plan import Origin, PayloadError, Plan, Planner, text_field
from tenpo.shared.protocol import Event

# Stores' clocks are HLC-disciplined, but a visit time is a wall-clock reading: accept 2000..2100.
_EARLIEST, _LATEST = 946_684_800.0, 4_102_444_800.0
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


def _time(payload: dict[str, Any], key: str) -> float:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PayloadError(f"{key}: must be a time in unix seconds")
    if not _EARLIEST <= value <= _LATEST:
        raise PayloadError(f"{key}: {value} is not a plausible time")
    return float(value)


def _dwell(payload: dict[str, Any], since: float, until: float) -> float:
    value = payload.get("dwell_s")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise PayloadError("dwell_s: must be a non-negative number of seconds")
    if until < since - _CLOCK_SLACK_S:
        raise PayloadError("left_at: earlier than the arrival")
    if abs((until - since) - value) > _CLOCK_SLACK_S:
        raise PayloadError(f"dwell_s: {value} does not match the stay's ends ({until - since:.3f} s)")
    return float(value)


def _same_store(payload: dict[str, Any], origin: Origin) -> None:
    store = payload.get("store")
    if store is not None and store != origin.store_id:
        raise PayloadError(f"store: {store!r} is not the sending store {origin.store_id!r}")


def _required(payload: dict[str, Any], key: str) -> str:
    value = text_field(payload, key)
    assert value is not None
    return value


def _subject(payload: dict[str, Any]) -> tuple[str, str, str | None]:
    kind = _required(payload, "subject_kind")
    if kind not in ("member", "beacon"):
        raise PayloadError("subject_kind: must be 'member' or 'beacon'")
    subject_id = _required(payload, "subject_id")
    member_id = text_field(payload, "member_id", required=False)
    if kind == "member" and member_id != subject_id:
        raise PayloadError("member_id: must equal subject_id for a member")
    if kind == "beacon" and member_id is not None:
        raise PayloadError("member_id: a zone beacon is not a member")
    return kind, subject_id, member_id


def _visit_arrived(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    p = event.payload
    _same_store(p, origin)
    plan.add(ARRIVED, (origin.store_id, _required(p, "visit_id"), _required(p, "member_id"), _time(p, "arrived_at"), now))


def _visit_left(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    p = event.payload
    _same_store(p, origin)
    arrived_at, left_at = _time(p, "arrived_at"), _time(p, "left_at")
    dwell = _dwell(p, arrived_at, left_at)
    interrupted = p.get("interrupted", False)
    if not isinstance(interrupted, bool):
        raise PayloadError("interrupted: must be true or false")
    plan.add(LEFT, (origin.store_id, _required(p, "visit_id"), _required(p, "member_id"), arrived_at, left_at, dwell,
                    int(interrupted), now))  # fmt: skip


def _zone_entered(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    p = event.payload
    _same_store(p, origin)
    kind, subject_id, member_id = _subject(p)
    plan.add(ZONE_ENTERED, (origin.store_id, _required(p, "stay_id"), _required(p, "zone"), kind, subject_id, member_id,
                            _time(p, "entered_at")))  # fmt: skip


def _zone_left(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    p = event.payload
    _same_store(p, origin)
    kind, subject_id, member_id = _subject(p)
    entered_at, left_at = _time(p, "entered_at"), _time(p, "left_at")
    dwell = _dwell(p, entered_at, left_at)
    plan.add(ZONE_LEFT, (origin.store_id, _required(p, "stay_id"), _required(p, "zone"), kind, subject_id, member_id,
                         entered_at, left_at, dwell))  # fmt: skip


def _coupon_triggered(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    p = event.payload
    _same_store(p, origin)
    plan.add(COUPON, (origin.store_id, _required(p, "coupon_id"), _required(p, "member_id"), _required(p, "rule"),
                      text_field(p, "visit_id", required=False), _time(p, "triggered_at"), now))  # fmt: skip


PLANNERS: dict[str, Planner] = {
    "visit.arrived": _visit_arrived,
    "visit.left": _visit_left,
    "zone.entered": _zone_entered,
    "zone.left": _zone_left,
    "coupon.triggered": _coupon_triggered,
}
