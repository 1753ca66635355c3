"""An inspection as a GS1 EPCIS 2.0 JSON-LD document: one ObjectEvent, action OBSERVE, bizStep receiving.

Shape from the EPCIS 2.0 standard's JSON-LD binding (examples in github.com/gs1/EPCIS, JSON/):
an ``EPCISDocument`` with ``@context``, ``schemaVersion`` "2.0", ``creationDate`` and
``epcisBody.eventList``. CBV 2.0 values are written in their bare form (``receiving``,
``in_progress``, ``desadv``), which the standard context expands to the CBV URIs.
EPCs are written as pure-identity URIs (``urn:epc:id:sgtin:...``); a tag with no GS1 scheme as its
raw URI (``urn:epc:raw:96.x<hex>``, TDS §12).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from tenpo.edge.inspection.store import InspectionRecord
from tenpo.shared.epc import decode_epc

CONTEXT: Final = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
_EVENT_NAMESPACE: Final = uuid.UUID("6f1d7a52-6b43-4c36-9b0a-5e1e0c1d7a11")  # stable event ids per inspection


def epc_uri(epc: str) -> str:
    decoded = decode_epc(epc)
    if decoded.pure_identity:
        return decoded.pure_identity
    return f"urn:epc:raw:{len(epc) * 4}.x{epc.upper()}"


def _offset(text: str) -> timezone:
    sign = -1 if text.startswith("-") else 1
    hours, minutes = text.lstrip("+-").split(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))


def iso_time(ts: float, tz_offset: str) -> str:
    return datetime.fromtimestamp(ts, _offset(tz_offset)).isoformat(timespec="milliseconds")


def epcis_document(
    record: InspectionRecord,
    *,
    read_point: str | None = None,
    biz_location: str | None = None,
    tz_offset: str = "+09:00",
    created: float | None = None,
) -> dict[str, Any]:
    """The items that arrived at the door (matched and unexpected; cross-reads are not here), as received."""
    verdict = record.verdict
    epcs = [epc_uri(epc) for epc in (*verdict.matched, *verdict.unexpected)]
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventID": f"urn:uuid:{uuid.uuid5(_EVENT_NAMESPACE, record.inspection_id)}",
        "eventTime": iso_time(record.closed_at, tz_offset),
        "eventTimeZoneOffset": tz_offset,
        "epcList": epcs,
        "action": "OBSERVE",
        "bizStep": "receiving",
        "disposition": "in_progress",
    }
    if read_point:
        event["readPoint"] = {"id": read_point}
    if biz_location:
        event["bizLocation"] = {"id": biz_location}
    if record.shipment_id:
        event["bizTransactionList"] = [{"type": "desadv", "bizTransaction": f"urn:tenpo:asn:{record.shipment_id}"}]
    return {
        "@context": [CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": iso_time(created if created is not None else record.closed_at, tz_offset),
        "epcisBody": {"eventList": [event]},
    }

