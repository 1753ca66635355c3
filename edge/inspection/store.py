"""ASNs and inspections in the store database: the imperative shell around matching.

Accepting a verdict posts the received quantities to the stock ledger and, in the same transaction,
one ``stock.moved`` event per SKU (reason ``receipt``) and an ``inspection.completed`` event for HQ,
so HQ sees the receipt exactly once (the transactional outbox: docs/design.md §2, rule 1). A transfer that
carries reservations collected here holds their units in the same transaction (``reservation.arrived``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import sqlite_utils

from tenpo.edge.db import transaction
from tenpo.edge.inspection.matching import CrossRead, Verdict, choose_asn, match
from tenpo.edge.inspection.session import ClosedSession
from tenpo.edge.ledgers import post_stock
from tenpo.edge.outbox import append, next_counter
from tenpo.edge.reservations import store as reservations
from tenpo.shared.asn import Asn, ParsedAsns, read_asn_file
from tenpo.shared.errors import UserError
from tenpo.shared.events import InspectionCompleted

PENDING, ACCEPTED, HELD = "pending", "accepted", "held"
_CHUNK = 500  # SQLite's default limit on host parameters is 999 (older builds)


class ReceiptLine(msgspec.Struct, frozen=True):
    sku: str
    gtin: str
    qty: int
    event_seq: int


class InspectionRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    inspection_id: str
    store: str
    shipment_id: str | None
    status: str
    opened_at: float
    closed_at: float
    reads: int
    tags: int
    verdict: Verdict
    created_at: float
    verdict_ms: float | None = None
    decided_at: float | None = None
    decided_by: str | None = None
    note: str | None = None
    receipt: list[ReceiptLine] = []
    unmapped_gtins: list[str] = []  # received but not in the product list: not posted

    def to_dict(self) -> dict[str, object]:
        built: dict[str, object] = msgspec.to_builtins(self)  # a Struct converts to a dict
        return built


# ---------------------------------------------------------------------------- ASNs


def save_asn(conn: sqlite3.Connection, asn: Asn, source: str, version: int, status: str = "open") -> bool:
    """Insert or update an ASN and its EPC index; False when an older version arrives late.

    A file load always wins (an operator asked for it); a feed change wins over an older version.
    A locally received ASN stays received even if HQ resends it as open.
    """
    changed = conn.execute(
        "INSERT INTO asns(shipment_id, store_id, status, source, data, version, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(shipment_id) DO UPDATE SET store_id = excluded.store_id, data = excluded.data,"
        " source = excluded.source, version = max(asns.version, excluded.version), updated_at = excluded.updated_at,"
        " status = CASE WHEN asns.status = 'received' AND excluded.status = 'open' THEN 'received' ELSE excluded.status END"
        " WHERE asns.version < excluded.version OR excluded.source = 'file'",
        (asn.shipment_id, asn.store, status, source, msgspec.json.encode(asn).decode(), version, time.time()),
    ).rowcount
    if not changed:
        return False
    conn.execute("DELETE FROM asn_epcs WHERE shipment_id = ?", (asn.shipment_id,))
    conn.executemany("INSERT OR IGNORE INTO asn_epcs(epc, shipment_id) VALUES (?, ?)",
                     [(epc, asn.shipment_id) for epc in asn.epcs])  # fmt: skip
    return True


def set_asn_status(conn: sqlite3.Connection, shipment_id: str, status: str, version: int | None = None) -> None:
    if version is None:
        conn.execute("UPDATE asns SET status = ?, updated_at = ? WHERE shipment_id = ?", (status, time.time(), shipment_id))
    else:
        conn.execute(
            "UPDATE asns SET status = ?, version = ?, updated_at = ? WHERE shipment_id = ? AND version < ?",
            (status, version, time.time(), shipment_id, version),
        )


def load_asn_file(db: sqlite_utils.Database, path: Path) -> ParsedAsns:
    """`tenpo edge inspect --asn FILE`: keep the good shipments, report the bad rows."""
    parsed = read_asn_file(path)
    with transaction(db) as conn:
        for asn in parsed.asns:
            save_asn(conn, asn, "file", 0)
    return parsed


def _asn(data: str) -> Asn:
    return msgspec.json.decode(data, type=Asn)


def open_asns(conn: sqlite3.Connection, store_id: str) -> list[Asn]:
    rows = conn.execute(
        "SELECT data FROM asns WHERE store_id = ? AND status = 'open' ORDER BY updated_at, shipment_id", (store_id,)
    ).fetchall()
    return [_asn(data) for (data,) in rows]


def list_asns(conn: sqlite3.Connection, store_id: str | None = None) -> list[dict[str, object]]:
    where, params = ("WHERE store_id = ?", (store_id,)) if store_id else ("", ())
    rows = conn.execute(
        f"SELECT shipment_id, store_id, status, source, data, updated_at FROM asns {where} ORDER BY updated_at", params
    ).fetchall()
    result = []
    for shipment_id, store, status, source, data, updated_at in rows:
        asn = _asn(data)
        result.append({"shipment_id": shipment_id, "store": store, "status": status, "source": source,
                       "epcs": len(asn.epcs), "units": len(asn.epcs) + sum(line.qty for line in asn.lines),
                       "cartons": len(asn.cartons), "updated_at": updated_at})  # fmt: skip
    return result


def cross_reads(conn: sqlite3.Connection, store_id: str, epcs: Iterable[str]) -> dict[str, CrossRead]:
    """Which of ``epcs`` are on another store's open ASN."""
    found: dict[str, CrossRead] = {}
    candidates = list(epcs)
    for start in range(0, len(candidates), _CHUNK):
        chunk = candidates[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for epc, store, shipment_id in conn.execute(
            "SELECT e.epc, a.store_id, a.shipment_id FROM asn_epcs e JOIN asns a ON a.shipment_id = e.shipment_id"
            f" WHERE a.status = 'open' AND a.store_id != ? AND e.epc IN ({marks})",
            (store_id, *chunk),
        ):
            found.setdefault(epc, CrossRead(epc, store, shipment_id))
    return found


def sku_by_gtin(conn: sqlite3.Connection) -> dict[str, str]:
    """GTIN-14 -> SKU from the product list's JAN codes (a JAN is a GTIN-13 or GTIN-8)."""
    rows = conn.execute("SELECT jan, sku FROM products WHERE jan IS NOT NULL AND jan != ''").fetchall()
    return {jan.zfill(14): sku for jan, sku in rows if jan.isdigit()}


# ---------------------------------------------------------------------------- inspections


def judge(conn: sqlite3.Connection, store_id: str, closed: ClosedSession) -> Verdict:
    """The verdict for a closed session against the best-fitting open ASN of this store."""
    asn = choose_asn(open_asns(conn, store_id), closed.sightings)
    expected = frozenset(asn.epcs) if asn else frozenset()
    arrived = [epc for epc, s in closed.sightings.items() if s.arrived and epc not in expected]
    return match(store_id, asn, closed.sightings, cross_reads(conn, store_id, arrived), sku_by_gtin(conn))


def record_inspection(
    db: sqlite_utils.Database, store_id: str, closed: ClosedSession, now: float | None = None
) -> InspectionRecord:
    """Judge a closed session and store the verdict as pending; returns the stored record."""
    with transaction(db) as conn:
        verdict = judge(conn, store_id, closed)
        number = next_counter(conn, "inspection")
        inspection_id = f"{store_id}-I{number:06d}"
        created = time.time()
        # The session's clock is the reads' clock (host time), so this is the latency a clerk sees.
        verdict_ms = round(max(0.0, ((now or created) - closed.closed_at) * 1000), 3)
        conn.execute(
            "INSERT INTO inspections(inspection_id, shipment_id, status, opened_at, closed_at, reads, tags, verdict,"
            " verdict_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (inspection_id, verdict.shipment_id, PENDING, closed.opened_at, closed.closed_at, closed.reads,
             len(closed.sightings), msgspec.json.encode(verdict).decode(), verdict_ms, created),
        )  # fmt: skip
    return InspectionRecord(inspection_id, store_id, verdict.shipment_id, PENDING, closed.opened_at, closed.closed_at,
                            closed.reads, len(closed.sightings), verdict, created, verdict_ms)  # fmt: skip


_COLUMNS = ("inspection_id, shipment_id, status, opened_at, closed_at, reads, tags, verdict, created_at, verdict_ms,"
            " decided_at, decided_by, note, receipt")  # fmt: skip


def _record(store_id: str, row: tuple[Any, ...]) -> InspectionRecord:
    (inspection_id, shipment_id, status, opened_at, closed_at, reads, tags, verdict, created_at, verdict_ms,
     decided_at, decided_by, note, receipt) = row  # fmt: skip
    posted = json.loads(receipt) if receipt else {}
    return InspectionRecord(
        inspection_id, store_id, shipment_id, status, opened_at, closed_at, reads, tags,
        msgspec.json.decode(verdict, type=Verdict), created_at, verdict_ms, decided_at, decided_by, note,
        [ReceiptLine(**line) for line in posted.get("lines", [])], posted.get("unmapped_gtins", []),
    )  # fmt: skip


def get_inspection(conn: sqlite3.Connection, store_id: str, inspection_id: str) -> InspectionRecord:
    row = conn.execute(f"SELECT {_COLUMNS} FROM inspections WHERE inspection_id = ?", (inspection_id,)).fetchone()
    if row is None:
        raise UserError(f"inspection {inspection_id}: not found (see `tenpo edge inspect list`)")
    return _record(store_id, row)


def list_inspections(
    conn: sqlite3.Connection, store_id: str, status: str | None = None, limit: int = 50
) -> list[InspectionRecord]:
    where, params = ("WHERE status = ?", (status,)) if status else ("", ())
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM inspections {where} ORDER BY created_at DESC, inspection_id DESC LIMIT ?", (*params, limit)
    ).fetchall()
    return [_record(store_id, row) for row in rows]


def _completed_event(conn: sqlite3.Connection, record: InspectionRecord, status: str, at: float, by: str | None,
                     received: int) -> int:  # fmt: skip
    summary = record.verdict.summary()
    summary["received_posted"] = received
    return append(conn, InspectionCompleted(inspection_id=record.inspection_id, shipment_id=record.shipment_id,
                                            status=status, summary=summary, at=at, by=by))  # type: ignore[arg-type]


def accept(db: sqlite_utils.Database, store_id: str, inspection_id: str, by: str | None = None,
           location: str = "floor") -> InspectionRecord:  # fmt: skip
    """Post what arrived to stock and report the inspection to HQ, in one transaction."""
    now = time.time()
    with transaction(db) as conn:
        record = get_inspection(conn, store_id, inspection_id)
        if record.status == ACCEPTED:
            raise UserError(f"inspection {inspection_id}: already accepted; its stock was posted once")
        skus = sku_by_gtin(conn)
        lines: list[ReceiptLine] = []
        unmapped: list[str] = []
        for count in record.verdict.gtins:
            if count.received <= 0:
                continue
            sku = count.sku or skus.get(count.gtin)
            if sku is None or not conn.execute("SELECT 1 FROM products WHERE sku = ?", (sku,)).fetchone():
                unmapped.append(count.gtin)
                continue
            ref = record.shipment_id or inspection_id
            seq = post_stock(conn, sku=sku, delta=count.received, reason="receipt", location=location, ref=ref, now=now)
            assert seq is not None
            lines.append(ReceiptLine(sku, count.gtin, count.received, seq))
        event_seq = _completed_event(conn, record, ACCEPTED, now, by, sum(line.qty for line in lines))
        receipt = {"lines": msgspec.to_builtins(lines), "unmapped_gtins": unmapped}
        conn.execute(
            "UPDATE inspections SET status = ?, decided_at = ?, decided_by = ?, event_seq = ?, receipt = ?"
            " WHERE inspection_id = ?",
            (ACCEPTED, now, by, event_seq, json.dumps(receipt), inspection_id),
        )
        if record.shipment_id:
            set_asn_status(conn, record.shipment_id, "received")
            # A transfer carrying reservations collected here: held from this same transaction (issue 18).
            received: dict[str, int] = {}
            for line in lines:
                received[line.sku] = received.get(line.sku, 0) + line.qty
            reservations.arrived(conn, store_id, record.shipment_id, received)
        return get_inspection(conn, store_id, inspection_id)


def hold(db: sqlite_utils.Database, store_id: str, inspection_id: str, by: str | None = None,
         note: str | None = None) -> InspectionRecord:  # fmt: skip
    """Hold for a manager: nothing is posted; HQ is told the delivery is held."""
    now = time.time()
    with transaction(db) as conn:
        record = get_inspection(conn, store_id, inspection_id)
        if record.status != PENDING:
            raise UserError(f"inspection {inspection_id}: is {record.status}, only a pending one can be held")
        event_seq = _completed_event(conn, record, HELD, now, by, 0)
        conn.execute(
            "UPDATE inspections SET status = ?, decided_at = ?, decided_by = ?, note = ?, event_seq = ? WHERE inspection_id = ?",
            (HELD, now, by, note, event_seq, inspection_id),
        )
        return get_inspection(conn, store_id, inspection_id)
