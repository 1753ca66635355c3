"""What the stores' reservation events do at HQ: each moves HQ's reservation through its state machine
(tenpo.cloud.channel.reservations), in the apply transaction, and tells the pickup store.

A clerk's 取り置き (``reservation.requested``, planned for the audit log by tenpo.cloud.audit) also
becomes a real reservation here: held at ``from_store``, picked up at ``pickup_store`` (the clerk's store
unless the clerk chose another). ``reservation.shipped`` and ``reservation.arrived`` carry one collected at
another store through its transfer (docs/transfers.md).
"""

from __future__ import annotations

from typing import Any

from tenpo.cloud.channel import reservations
from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple, Origin, PayloadError, Plan, Planner
from tenpo.shared.events import (
    ReservationArrived,
    ReservationDecided,
    ReservationPickedUp,
    ReservationRequested,
    ReservationShipped,
)
from tenpo.shared.protocol import Event

CLERK_HOLD_S = 7 * 86400.0  # a clerk's 取り置き waits a week for the customer
CLERK_CONFIRM_S = 86400.0  # and a day for the holding store's answer

_TARGET = {"reservation.confirmed": "confirmed", "reservation.rejected": "rejected", "reservation.ready": "ready",
           "reservation.picked_up": "picked_up"}  # fmt: skip


def _decided(plan: Plan, origin: Origin, event: Event, p: ReservationDecided, now: float) -> None:
    to = _TARGET[event.type]
    receipt = p.receipt_no if isinstance(p, ReservationPickedUp) else None

    def hook(db: Central, at: float) -> list[ChangeTuple]:
        return reservations.move(db, p.reservation_id, to, at, by_store=origin.store_id, reason=p.reason,
                                 receipt_no=receipt)  # fmt: skip

    plan.hooks[f"reservation/{origin.store_id}/{event.seq}"] = hook


def _shipped(plan: Plan, origin: Origin, event: Event, p: ReservationShipped, now: float) -> None:
    def hook(db: Central, at: float) -> list[ChangeTuple]:
        return reservations.ship(db, p.reservation_id, origin.store_id, p.transfer_id, p.to_store, at)

    plan.hooks[f"reservation/{origin.store_id}/{event.seq}"] = hook


def _arrived(plan: Plan, origin: Origin, event: Event, p: ReservationArrived, now: float) -> None:
    def hook(db: Central, at: float) -> list[ChangeTuple]:
        return reservations.arrive(db, p.reservation_id, origin.store_id, p.transfer_id, p.held, at)

    plan.hooks[f"reservation/{origin.store_id}/{event.seq}"] = hook


def _clerk_requested(plan: Plan, origin: Origin, event: Event, p: ReservationRequested, now: float) -> None:
    if not p.reservation_id.startswith(f"{origin.store_id}-"):
        raise PayloadError(f"reservation_id: {p.reservation_id} is not an id of store {origin.store_id}")

    def hook(db: Central, at: float) -> list[ChangeTuple]:
        if reservations.row(db, p.reservation_id) is not None:
            return []
        record: dict[str, Any]
        record, changes = reservations.create(
            db, reservation_id=p.reservation_id, channel=f"store:{origin.store_id}", store_id=p.from_store,
            sku=p.sku, qty=p.qty, member_id=p.member_id, customer=p.customer,
            pickup_store=p.pickup_store or origin.store_id,  # the clerk's choice: here, the holding store, another
            hold_s=CLERK_HOLD_S, confirm_s=CLERK_CONFIRM_S, now=at,
            held_by_store=p.from_store == origin.store_id,  # its own stock: the store decided (its next event)
        )  # fmt: skip
        return changes

    plan.hooks[f"reservation/{origin.store_id}/{event.seq}"] = hook


PLANNERS: dict[str, Planner] = {event_type: _decided for event_type in _TARGET}
PLANNERS.update({"reservation.shipped": _shipped, "reservation.arrived": _arrived})  # collected at another store
FOLLOW_UPS: dict[str, Planner] = {"reservation.requested": _clerk_requested}
