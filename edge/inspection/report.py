"""Inspection reports: text for the clerk and the manager, JSON for scripts, EPCIS 2.0 for partners.

Files are named after the inspection (``S001-I000007.txt``, ``.json``, ``.epcis.jsonld``) and are
rewritten when its status changes, so the folder always shows the latest decision.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tenpo.edge.inspection.epcis import epcis_document
from tenpo.edge.inspection.store import InspectionRecord

LIST_LIMIT = 20  # EPCs printed per list in the text report; the JSON report has all of them


@dataclass(frozen=True, slots=True)
class ReportSettings:
    directory: Path
    read_point: str | None = None
    biz_location: str | None = None
    tz_offset: str = "+09:00"


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def render_text(record: InspectionRecord) -> str:
    v = record.verdict
    verdict_word = "CLEAN" if v.clean else "DIFFERENCES"
    lines = [
        f"Dock inspection {record.inspection_id}  store {record.store}  shipment {record.shipment_id or '(no open ASN)'}",
        f"status {record.status.upper()}  verdict {verdict_word}  session {_when(record.opened_at)} - "
        f"{_when(record.closed_at)}  {record.reads} reads of {record.tags} tags"
        + (f"  verdict in {record.verdict_ms:.0f} ms" if record.verdict_ms is not None else ""),
        "",
        f"  expected   {v.expected_units:>6}",
        f"  matched    {len(v.matched):>6}",
        f"  missing    {len(v.missing):>6}",
        f"  unexpected {len(v.unexpected):>6}",
        f"  wrong store{len(v.wrong_store):>6}   (cross-reads from another store's delivery: not received)",
        f"  not counted{v.not_arrivals:>6}   (weak reads, or seen inside before the door)",
    ]
    if v.cartons_seen or v.cartons_missing or v.cartons_unexpected:
        lines.append(f"  cartons    {len(v.cartons_seen):>6} seen, {len(v.cartons_missing)} missing, "
                     f"{len(v.cartons_unexpected)} not on the ASN")  # fmt: skip
    if v.gtins:
        lines += ["", f"  {'GTIN':<15} {'SKU':<14} {'expected':>8} {'received':>8} {'over/short':>10}"]
        for g in v.gtins:
            diff = g.difference
            mark = "" if diff == 0 else (f"+{diff} over" if diff > 0 else f"{diff} short")
            lines.append(f"  {g.gtin:<15} {g.sku or '?':<14} {g.expected:>8} {g.received:>8} {mark:>10}")
    for title, values in (
        ("Missing", v.missing),
        ("Unexpected", v.unexpected),
        ("Wrong store", [f"{c.epc}  -> {c.store} ({c.shipment_id})" for c in v.wrong_store]),
        ("Cartons missing", v.cartons_missing),
    ):
        if values:
            lines += ["", f"{title} ({len(values)}):"]
            lines += [f"  {value}" for value in values[:LIST_LIMIT]]
            if len(values) > LIST_LIMIT:
                lines.append(f"  ... and {len(values) - LIST_LIMIT} more (see the JSON report)")
    if record.receipt or record.unmapped_gtins:
        lines += ["", "Posted to stock:"]
        lines += [f"  {r.sku:<14} +{r.qty}  (GTIN {r.gtin}, event {r.event_seq})" for r in record.receipt]
        lines += [f"  GTIN {gtin}: not in the product list, not posted" for gtin in record.unmapped_gtins]
    if record.decided_at is not None:
        by = f" by {record.decided_by}" if record.decided_by else ""
        lines += ["", f"{record.status} {_when(record.decided_at)}{by}" + (f": {record.note}" if record.note else "")]
    return "\n".join(lines) + "\n"


def report_json(record: InspectionRecord) -> dict[str, Any]:
    data = record.to_dict()
    data["summary"] = record.verdict.summary()
    return data


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)  # a reader never sees half a report


def write_reports(record: InspectionRecord, settings: ReportSettings) -> list[Path]:
    settings.directory.mkdir(parents=True, exist_ok=True)
    base = settings.directory / record.inspection_id
    epcis = epcis_document(record, read_point=settings.read_point, biz_location=settings.biz_location,
                           tz_offset=settings.tz_offset)  # fmt: skip
    outputs = {
        base.with_suffix(".txt"): render_text(record),
        base.with_suffix(".json"): json.dumps(report_json(record), ensure_ascii=False, indent=2),
        base.with_suffix(".epcis.jsonld"): json.dumps(epcis, ensure_ascii=False, indent=2),
    }
    for path, text in outputs.items():
        _write(path, text)
    return list(outputs)
