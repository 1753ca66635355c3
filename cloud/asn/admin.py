"""HQ side of ASNs: import from files into the change feed, close, and the lists the HQ monitor shows."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from tenpo.cloud.changes import audit, record_changes
from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple
from tenpo.shared.asn import Asn, RowError, read_asn_file
from tenpo.shared.errors import UserError


@dataclass(frozen=True, slots=True)
class AsnImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # shipment ids
    errors: list[RowError] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged,
                "rejected": self.rejected, "errors": [str(e) for e in self.errors]}  # fmt: skip


def _units(asn: Asn) -> int:
    return len(asn.epcs) + sum(line.qty for line in asn.lines)


def _change_data(asn: Asn, status: str) -> dict[str, Any]:
    return {**asn.to_dict(), "status": status, "version": 0}


def import_asns(db: Central, path: Path) -> AsnImportReport:
    """Store each good ASN and send it to every store (``asn.upsert``; the destination is in the data:
    the other stores need it too, to recognise cross-reads)."""
    parsed = read_asn_file(path)
    report = AsnImportReport(rejected=list(parsed.rejected_shipments), errors=list(parsed.errors))
    now = time.time()
    with db.transaction():
        known_stores = {row[0] for row in db.all("SELECT store_id FROM stores")}
        changes: list[ChangeTuple] = []
        for asn in parsed.asns:
            if asn.store not in known_stores:
                report.errors.append(RowError(f"shipment {asn.shipment_id}", f"store {asn.store} is not registered at HQ"))
                report.rejected.append(asn.shipment_id)
                continue
            text = msgspec.json.encode(asn).decode()
            current = db.one("SELECT data, status FROM asns WHERE shipment_id = ?" + db.lock_suffix(), (asn.shipment_id,))
            if current is not None and current[1] != "open":
                report.errors.append(RowError(f"shipment {asn.shipment_id}", f"already {current[1]}; not changed"))
                report.rejected.append(asn.shipment_id)
                continue
            if current is not None and current[0] == text:
                report.unchanged.append(asn.shipment_id)
                continue
            if current is None:
                db.execute(
                    "INSERT INTO asns(shipment_id, store_id, status, data, units, created_at, updated_at)"
                    " VALUES (?, ?, 'open', ?, ?, ?, ?)",
                    (asn.shipment_id, asn.store, text, _units(asn), now, now),
                )
                report.created.append(asn.shipment_id)
            else:
                db.execute("UPDATE asns SET store_id = ?, data = ?, units = ?, updated_at = ? WHERE shipment_id = ?",
                           (asn.store, text, _units(asn), now, asn.shipment_id))  # fmt: skip
                report.updated.append(asn.shipment_id)
            changes.append(("asn.upsert", asn.shipment_id, None, _change_data(asn, "open")))
        seqs = record_changes(db, changes, now)
        db.executemany("UPDATE asns SET version = ? WHERE shipment_id = ?", [(s, c[1]) for s, c in zip(seqs, changes)])
        if changes:
            audit(db, "operator", "asn.imported", None, {"file": str(path), "shipments": [c[1] for c in changes]})
    return report


def close_asn(db: Central, shipment_id: str) -> None:
    """Cancel an open ASN (the delivery will not come); every store stops expecting it."""
    now = time.time()
    with db.transaction():
        status = db.scalar("SELECT status FROM asns WHERE shipment_id = ?" + db.lock_suffix(), (shipment_id,))
        if status is None:
            raise UserError(f"shipment {shipment_id}: no such ASN")
        if status != "open":
            raise UserError(f"shipment {shipment_id}: already {status}")
        db.execute("UPDATE asns SET status = 'closed', updated_at = ? WHERE shipment_id = ?", (now, shipment_id))
        closed = {"shipment_id": shipment_id, "status": "closed", "version": 0}
        record_changes(db, [("asn.closed", shipment_id, None, closed)], now)
        audit(db, "operator", "asn.closed", shipment_id, {})


ASN_COLUMNS = ("shipment_id", "store_id", "status", "units", "created_at", "received_at", "received_by_inspection")
INSPECTION_COLUMNS = ("store_id", "inspection_id", "shipment_id", "status", "summary", "at")


def asn_rows(db: Central, store_id: str | None = None) -> list[dict[str, Any]]:
    where, params = ("WHERE store_id = ?", (store_id,)) if store_id else ("", ())
    rows = db.all(f"SELECT {', '.join(ASN_COLUMNS)} FROM asns {where} ORDER BY created_at, shipment_id", params)
    return [dict(zip(ASN_COLUMNS, row)) for row in rows]


def inspection_rows(db: Central, store_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first; ``summary`` decoded (counts, over/short per GTIN)."""
    where, params = ("WHERE store_id = ?", (store_id,)) if store_id else ("", ())
    rows = db.all(f"SELECT {', '.join(INSPECTION_COLUMNS)} FROM inspections {where} ORDER BY at DESC LIMIT ?",
                  (*params, limit))  # fmt: skip
    result = []
    for row in rows:
        record = dict(zip(INSPECTION_COLUMNS, row))
        record["summary"] = json.loads(record["summary"])
        result.append(record)
    return result
