"""Event planners this area defines (event type -> planner); merged into tenpo.cloud.effects.PLANNERS.

``inspection.completed``: a store accepted (or held) a dock inspection. The row is upserted, so a
held delivery accepted later shows its final status; the received stock itself arrives as the
``stock.moved`` events of the same transaction at the store. An accepted inspection marks its ASN
received and tells every store (``asn.closed``), so its EPCs stop counting as cross-reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenpo.cloud.asn import transfers
from tenpo.cloud.plan import ChangeTuple, Hook, Origin, Plan, Planner, as_json
from tenpo.shared.events import InspectionCompleted
from tenpo.shared.protocol import Event

if TYPE_CHECKING:
    from tenpo.cloud.db import Central

UPSERT_INSPECTION = (
    "INSERT INTO inspections(store_id, inspection_id, shipment_id, status, summary, at, stream, store_seq, applied_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(store_id, inspection_id) DO UPDATE SET"
    " shipment_id = excluded.shipment_id, status = excluded.status, summary = excluded.summary, at = excluded.at,"
    " stream = excluded.stream, store_seq = excluded.store_seq, applied_at = excluded.applied_at"
)


def _inspection_completed(plan: Plan, origin: Origin, event: Event, p: InspectionCompleted, now: float) -> None:
    plan.add(UPSERT_INSPECTION, (origin.store_id, p.inspection_id, p.shipment_id, p.status, as_json(p.summary), p.at,
                                 origin.stream, event.seq, now))  # fmt: skip
    if p.status == "accepted" and p.shipment_id:
        # One hook per inspection, run in event order: the first accepted one closes the shipment and the later
        # ones find it closed, in one batch, a group of batches (cloud/apply_group.py) or one at a time.
        key = f"{p.shipment_id}/{p.inspection_id}"
        plan.hooks[f"asn.received:{key}"] = _mark_received(origin.store_id, p.shipment_id, p.inspection_id)
        if (received := transfers.received_hook(origin.store_id, p)) is not None:
            plan.hooks[f"transfer.received:{key}"] = received


def _mark_received(store_id: str, shipment_id: str, inspection_id: str) -> Hook:
    def hook(db: Central, now: float) -> list[ChangeTuple]:
        changed = db.execute(
            "UPDATE asns SET status = 'received', received_at = ?, received_by_inspection = ?, updated_at = ?"
            " WHERE shipment_id = ? AND store_id = ? AND status = 'open'",
            (now, inspection_id, now, shipment_id, store_id),
        ).rowcount
        if not changed:  # an ASN HQ never sent (loaded from a file at the store), or already received
            return []
        return [("asn.closed", shipment_id, None, {"shipment_id": shipment_id, "status": "received", "version": 0})]

    return hook


PLANNERS: dict[str, Planner] = {"inspection.completed": _inspection_completed,
                                "transfer.shipped": transfers.planner}  # fmt: skip
