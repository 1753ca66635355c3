"""Event planners this area defines (event type -> planner); merged into tenpo.cloud.effects.PLANNERS.

``inspection.completed``: a store accepted (or held) a dock inspection. The row is upserted, so a
held delivery accepted later shows its final status; the received stock itself arrives as the
``stock.moved`` events of the same transaction at the store. An accepted inspection marks its ASN
received and tells every store (``asn.closed``), so its EPCs stop counting as cross-reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenpo.cloud.plan import ChangeTuple, Origin, PayloadError, Plan, Planner, dict_field, text_field
from tenpo.shared.protocol import Event

if TYPE_CHECKING:
    from tenpo.cloud.db import Central

INSPECTION_STATUSES = ("accepted", "held")

UPSERT_INSPECTION = (
    "INSERT INTO inspections(store_id, inspection_id, shipment_id, status, summary, at, stream, store_seq, applied_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(store_id, inspection_id) DO UPDATE SET"
    " shipment_id = excluded.shipment_id, status = excluded.status, summary = excluded.summary, at = excluded.at,"
    " stream = excluded.stream, store_seq = excluded.store_seq, applied_at = excluded.applied_at"
)


def _inspection_completed(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    p = event.payload
    inspection_id = text_field(p, "inspection_id")
    shipment_id = text_field(p, "shipment_id", required=False)
    status = text_field(p, "status")
    if status not in INSPECTION_STATUSES:
        raise PayloadError(f"status: must be one of {', '.join(INSPECTION_STATUSES)}")
    summary = dict_field(p, "summary")
    if summary is None:
        raise PayloadError("summary: missing")
    at = p.get("at")
    if isinstance(at, bool) or not isinstance(at, (int, float)):
        raise PayloadError("at: must be a number (seconds since the epoch)")
    plan.add(UPSERT_INSPECTION, (origin.store_id, inspection_id, shipment_id, status, summary, float(at),
                                 origin.stream, event.seq, now))  # fmt: skip
    if status == "accepted" and shipment_id:
        plan.hooks[f"asn.received:{shipment_id}"] = _mark_received(origin.store_id, shipment_id, inspection_id)


def _mark_received(store_id: str, shipment_id: str, inspection_id: str):
    def hook(db: "Central", now: float) -> list[ChangeTuple]:
        changed = db.execute(
            "UPDATE asns SET status = 'received', received_at = ?, received_by_inspection = ?, updated_at = ?"
            " WHERE shipment_id = ? AND store_id = ? AND status = 'open'",
            (now, inspection_id, now, shipment_id, store_id),
        ).rowcount
        if not changed:  # an ASN HQ never sent (loaded from a file at the store), or already received
            return []
        return [("asn.closed", shipment_id, None, {"shipment_id": shipment_id, "status": "received", "version": 0})]

    return hook


PLANNERS: dict[str, Planner] = {"inspection.completed": _inspection_completed}
