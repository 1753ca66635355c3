"""Planners for events the clerk terminal sends: ``member.viewed`` and ``reservation.requested``.

Both land in the core ``audit_log`` (actor ``STORE/CLERK``), where HQ answers "who looked at this
member's data" (APPI disclosure requests) and sees which pickups stores asked for.
"""

from __future__ import annotations

import json

from tenpo.cloud.plan import Origin, PayloadError, Plan, Planner, int_field, text_field
from tenpo.shared.protocol import Event

INSERT_AUDIT = "INSERT INTO audit_log(actor, action, subject, detail, at) VALUES (?, ?, ?, ?, ?)"
VIEW_ACTIONS = ("view", "export")


def _at(payload: dict, now: float) -> float:
    value = payload.get("at", now)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PayloadError("at: must be a number (epoch seconds)")
    return float(value)


def _member_viewed(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    p = event.payload
    clerk = text_field(p, "clerk_id")
    member_id = text_field(p, "member_id")
    action = text_field(p, "action")
    if action not in VIEW_ACTIONS:
        raise PayloadError(f"action: must be one of {', '.join(VIEW_ACTIONS)}")
    detail = json.dumps({"store_seq": event.seq}, separators=(",", ":"))
    plan.add(INSERT_AUDIT, (f"{origin.store_id}/{clerk}", f"member.{action}", member_id, detail, _at(p, now)))


def _reservation_requested(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    p = event.payload
    clerk = text_field(p, "clerk_id")
    reservation_id = text_field(p, "reservation_id")
    assert reservation_id is not None
    if not reservation_id.startswith(f"{origin.store_id}-"):
        raise PayloadError(f"reservation_id: {reservation_id} is not an id of store {origin.store_id}")
    sku = text_field(p, "sku")
    from_store = text_field(p, "from_store")
    qty = int_field(p, "qty")
    if qty < 1:
        raise PayloadError("qty: must be at least 1")
    member_id = text_field(p, "member_id", required=False)
    customer = p.get("customer")
    if customer is not None and not isinstance(customer, str):
        raise PayloadError("customer: must be a string")
    detail = json.dumps({"reservation_id": reservation_id, "sku": sku, "qty": qty, "from_store": from_store,
                         "pickup_store": origin.store_id, "member_id": member_id, "customer": customer},
                        ensure_ascii=False, separators=(",", ":"))  # fmt: skip
    plan.add(INSERT_AUDIT, (f"{origin.store_id}/{clerk}", "reservation.requested", f"{from_store}/{sku}", detail,
                            _at(p, now)))  # fmt: skip


PLANNERS: dict[str, Planner] = {
    "member.viewed": _member_viewed,
    "reservation.requested": _reservation_requested,
}
