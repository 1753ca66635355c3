"""お取り寄せ for home delivery at HQ (issue 18 §7, docs/channel.md "Home delivery").

A clerk at store A finds the missing size at store B and orders it delivered to the customer's home: A's
``delivery.requested`` becomes a reservation held at B (the reservation machinery as it is: HQ checks its
last report of B, B's agent confirms or rejects against its live ledger, the sweep expires one never
shipped), plus a ``deliveries`` row with where it goes. B is sent the address (``delivery.upsert``, B only,
before the reservation's own change) so its clerk can ship it; A hears each state change as for a 取り置き.
Shipping is a sale at B consuming the reservation (paid on delivery), so the stock leaves B as a sale.

The address is personal data: HQ keeps it beside the reservation. Erasing the member blanks it at HQ and at both
stores (tenpo.cloud.channel.erasure); a delivery taken for a name and address alone, with no member, is not
reached by any member's erasure and is kept as long as the reservation.
"""

from __future__ import annotations

from typing import Any

from tenpo.cloud.channel import reservations
from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple, Origin, PayloadError, Plan, Planner
from tenpo.shared.events import DeliveryRequested
from tenpo.shared.protocol import Event

DELIVERY_HOLD_S = 3 * 86400.0  # the shipping store has three days to send it, then the sweep expires it
DELIVERY_CONFIRM_S = 86400.0  # and a day to answer, as for a clerk's 取り置き


def _requested(plan: Plan, origin: Origin, event: Event, p: DeliveryRequested, now: float) -> None:
    if not p.reservation_id.startswith(f"{origin.store_id}-"):
        raise PayloadError(f"reservation_id: {p.reservation_id} is not an id of store {origin.store_id}")
    if p.from_store == origin.store_id:
        raise PayloadError("from_store: a delivery ships from another store (this one sells its own stock)")

    def hook(db: Central, at: float) -> list[ChangeTuple]:
        if reservations.row(db, p.reservation_id) is not None:
            return []  # a replayed batch
        return create(db, origin.store_id, p, at)

    plan.hooks[f"delivery/{origin.store_id}/{event.seq}"] = hook


def create(db: Central, ordered_at: str, p: DeliveryRequested, now: float) -> list[ChangeTuple]:
    """The reservation at the shipping store and the delivery row; the feed entries (the address to the shipping
    store first, only if the reservation goes to it)."""
    record: dict[str, Any]
    record, changes = reservations.create(
        db, reservation_id=p.reservation_id, channel=f"store:{ordered_at}", store_id=p.from_store, sku=p.sku,
        qty=p.qty, member_id=p.member_id, customer=p.customer, pickup_store=None,
        hold_s=DELIVERY_HOLD_S, confirm_s=DELIVERY_CONFIRM_S, now=now,
    )  # fmt: skip
    db.execute("INSERT INTO deliveries(reservation_id, ordered_at, store_id, customer, address, phone, created_at)"
               " VALUES (?, ?, ?, ?, ?, ?, ?)",
               (p.reservation_id, ordered_at, p.from_store, p.customer, p.address, p.phone, now))  # fmt: skip
    if record["state"] != "requested":
        return changes  # refused at HQ's last report: the ordering store hears why, the other store nothing
    address = ("delivery.upsert", p.reservation_id, p.from_store, {
        "reservation_id": p.reservation_id, "store_id": p.from_store, "ordered_at": ordered_at, "sku": p.sku,
        "qty": p.qty, "member_id": p.member_id, "customer": p.customer, "address": p.address, "phone": p.phone,
        "version": 0})  # fmt: skip
    return [address, *changes]


PLANNERS: dict[str, Planner] = {"delivery.requested": _requested}
