"""Planners for events the clerk terminal sends: ``member.viewed`` and ``reservation.requested``.

Both land in the core ``audit_log`` (actor ``STORE/CLERK``), where HQ answers "who looked at this
member's data" (APPI disclosure requests) and sees which pickups stores asked for.
"""

from __future__ import annotations

import json

from tenpo.cloud.audit.chain import seal_hook
from tenpo.cloud.plan import Origin, PayloadError, Plan, Planner
from tenpo.shared.events import MemberViewed, ReservationRequested
from tenpo.shared.protocol import Event

INSERT_AUDIT = "INSERT INTO audit_log(actor, action, subject, detail, at) VALUES (?, ?, ?, ?, ?)"


def _member_viewed(plan: Plan, origin: Origin, event: Event, p: MemberViewed, now: float) -> None:
    detail = json.dumps({"store_seq": event.seq}, separators=(",", ":"))
    at = now if p.at is None else p.at
    plan.add(INSERT_AUDIT, (f"{origin.store_id}/{p.clerk_id}", f"member.{p.action}", p.member_id, detail, at))
    plan.hooks["audit.seal"] = seal_hook  # chained at commit (issue 14)


def _reservation_requested(plan: Plan, origin: Origin, event: Event, p: ReservationRequested, now: float) -> None:
    if not p.reservation_id.startswith(f"{origin.store_id}-"):
        raise PayloadError(f"reservation_id: {p.reservation_id} is not an id of store {origin.store_id}")
    detail = json.dumps({"reservation_id": p.reservation_id, "sku": p.sku, "qty": p.qty, "from_store": p.from_store,
                         "pickup_store": origin.store_id, "member_id": p.member_id, "customer": p.customer},
                        ensure_ascii=False, separators=(",", ":"))  # fmt: skip
    at = now if p.at is None else p.at
    plan.add(INSERT_AUDIT, (f"{origin.store_id}/{p.clerk_id}", "reservation.requested", f"{p.from_store}/{p.sku}",
                            detail, at))  # fmt: skip
    plan.hooks["audit.seal"] = seal_hook


PLANNERS: dict[str, Planner] = {
    "member.viewed": _member_viewed,
    "reservation.requested": _reservation_requested,
}
