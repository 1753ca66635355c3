"""Store-to-store transfers at HQ: a sender's ``transfer.shipped`` becomes the receiver's ASN, and what
the receiver's dock inspection did not find becomes a ``transfer-short`` conflict.

The units left the sender's ledger with the event (its ``stock.moved``); they enter the receiver's
ledger only as its dock inspection finds them (``stock.moved``, reason ``receipt``). So the chain's
stock is right at every step and a shortfall is visible as one conflict per transfer, which an
operator accepts (lost in transit) or sends back to the sender's stock (never left). docs/transfers.md.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import msgspec

from tenpo.cloud.plan import ChangeTuple, Hook, Origin, Plan
from tenpo.shared.asn import Asn, AsnLine
from tenpo.shared.events import InspectionCompleted, TransferShipped
from tenpo.shared.protocol import Event

if TYPE_CHECKING:
    from tenpo.cloud.db import Central

TRANSFER = "transfer-short"  # the conflict kind (tenpo.cloud.sales.conflicts resolves it)

INSERT_TRANSFER = (
    "INSERT INTO transfers(transfer_id, from_store, to_store, data, units, status, shipped_at, stream, store_seq,"
    " applied_at) VALUES (?, ?, ?, ?, ?, 'shipped', ?, ?, ?, ?) ON CONFLICT(transfer_id) DO NOTHING"
)


def transfer_asn(p: TransferShipped, from_store: str) -> Asn:
    """The receiving store's ASN: the tags when the sender listed them, else a quantity per GTIN. Pure."""
    lines = () if p.epcs else tuple(AsnLine(gtin=line.gtin, qty=line.qty, sku=line.sku) for line in p.lines)
    return Asn(shipment_id=p.transfer_id, store=p.to_store, epcs=tuple(p.epcs), lines=lines,
               supplier=f"store {from_store}")  # fmt: skip


def shortfall(sent: dict[str, int], summary: dict[str, Any]) -> dict[str, Any] | None:
    """Per GTIN what a transfer's accepted inspection found short or over; None when it all came. Pure."""
    short = {g: int(n) for g, n in (summary.get("short") or {}).items() if int(n) > 0}
    over = {g: int(n) for g, n in (summary.get("over") or {}).items() if int(n) > 0}
    if not short and not over:
        return None
    return {"sent": sum(sent.values()), "short": short, "over": over, "missing_units": sum(short.values()),
            "extra_units": sum(over.values())}  # fmt: skip


def planner(plan: Plan, origin: Origin, event: Event, p: TransferShipped, now: float) -> None:
    units = len(p.epcs) or sum(line.qty for line in p.lines)
    plan.add(INSERT_TRANSFER, (p.transfer_id, origin.store_id, p.to_store, msgspec.json.encode(p).decode(), units,
                               p.at or now, origin.stream, event.seq, now))  # fmt: skip
    plan.hooks[f"transfer.shipped:{p.transfer_id}"] = _send_asn(origin.store_id, p)


def _send_asn(from_store: str, p: TransferShipped) -> Hook:
    def hook(db: Central, now: float) -> list[ChangeTuple]:
        if db.scalar("SELECT 1 FROM asns WHERE shipment_id = ?", (p.transfer_id,)):
            return []  # sent already (the event was applied before)
        if p.to_store == from_store or not db.scalar("SELECT 1 FROM stores WHERE store_id = ?", (p.to_store,)):
            # The units left the sender but nobody will receive them: the operator must decide.
            db.execute("UPDATE transfers SET status = 'undeliverable' WHERE transfer_id = ?", (p.transfer_id,))
            _open(db, p.transfer_id, from_store, -_units(p), {
                "transfer_id": p.transfer_id, "from_store": from_store, "to_store": p.to_store,
                "reason": f"store {p.to_store} is not registered at HQ: no ASN was made", "sent": _units(p),
                "skus": {line.sku: line.qty for line in p.lines}, "missing_units": _units(p)}, now)  # fmt: skip
            return []
        asn = transfer_asn(p, from_store)
        db.execute("INSERT INTO asns(shipment_id, store_id, status, data, units, created_at, updated_at)"
                   " VALUES (?, ?, 'open', ?, ?, ?, ?)",
                   (asn.shipment_id, asn.store, msgspec.json.encode(asn).decode(), _units(p), now, now))  # fmt: skip
        return [("asn.upsert", asn.shipment_id, None, {**asn.to_dict(), "status": "open", "version": 0})]

    return hook


def _units(p: TransferShipped) -> int:
    return len(p.epcs) or sum(line.qty for line in p.lines)


def received_hook(store_id: str, p: InspectionCompleted) -> Hook | None:
    """For an accepted inspection of a transfer: mark it received, and open a conflict for what differs."""
    if p.status != "accepted" or not p.shipment_id:
        return None
    shipment_id, summary, inspection_id = p.shipment_id, dict(p.summary), p.inspection_id

    def hook(db: Central, now: float) -> list[ChangeTuple]:
        row = db.one("SELECT from_store, to_store, data, status FROM transfers WHERE transfer_id = ?", (shipment_id,))
        if row is None or row[1] != store_id or row[3] != "shipped":
            return []  # not a transfer, another store's, or decided already
        shipped = msgspec.json.decode(row[2], type=TransferShipped)
        sent = {line.gtin: line.qty for line in shipped.lines}
        found = shortfall(sent, summary)
        db.execute("UPDATE transfers SET status = ?, received_at = ?, inspection_id = ? WHERE transfer_id = ?",
                   ("received" if found is None else "received-short", now, inspection_id, shipment_id))  # fmt: skip
        if found is not None:
            skus = {line.gtin: line.sku for line in shipped.lines}
            detail = {"transfer_id": shipment_id, "from_store": row[0], "to_store": store_id,
                      "inspection_id": inspection_id, **found,
                      "skus": {skus.get(g, g): n for g, n in found["short"].items()}}  # fmt: skip
            _open(db, shipment_id, store_id, found["extra_units"] - found["missing_units"], detail, now)
        return []

    return hook


def _open(db: Central, transfer_id: str, store_id: str, level: int, detail: dict[str, Any], now: float) -> None:
    db.execute(
        "INSERT INTO conflicts(kind, subject, store_id, level, detail, status, detected_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, 'open', ?, ?) ON CONFLICT (kind, subject) WHERE status = 'open' DO NOTHING",
        (TRANSFER, transfer_id, store_id, level, json.dumps(detail, ensure_ascii=False), now, now),
    )

