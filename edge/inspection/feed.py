"""Change-feed kinds this area defines (kind -> handler); merged into tenpo.edge.feed.CHANGE_HANDLERS.

A handler is ``handler(conn, store_id, rows, version)``: apply ``rows`` (change data dicts) inside the
caller's transaction; ``version`` is the change seq (None in a snapshot: use ``row["version"]``).

Every store keeps every store's ASNs: its own to inspect against, the others to recognise a
cross-read from a neighbouring dock. A row that is not a valid ASN raises ValueError, which the
feed turns into a dead letter without stopping the page.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable

from tenpo.edge.inspection.store import save_asn, set_asn_status
from tenpo.shared.asn import asn_from_dict

Handler = Callable[[sqlite3.Connection, str, list[dict[str, Any]], "int | None"], None]

ASN_STATUSES = ("open", "received", "closed")


def _status(row: dict[str, Any]) -> str:
    status = row.get("status", "open")
    if status not in ASN_STATUSES:
        raise ValueError(f"status {status!r} must be one of {', '.join(ASN_STATUSES)}")
    return status


def _asn_upsert(conn: sqlite3.Connection, store_id: str, rows: list[dict[str, Any]], version: int | None) -> None:
    for row in rows:
        save_asn(conn, asn_from_dict(row), "hq", int(version or row["version"]), _status(row))


def _asn_closed(conn: sqlite3.Connection, store_id: str, rows: list[dict[str, Any]], version: int | None) -> None:
    for row in rows:
        shipment_id = row["shipment_id"]
        if not isinstance(shipment_id, str):
            raise ValueError("shipment_id must be a string")
        set_asn_status(conn, shipment_id, _status(row), int(version or row["version"]))


CHANGE_HANDLERS: dict[str, Handler] = {"asn.upsert": _asn_upsert, "asn.closed": _asn_closed}
SNAPSHOT_HANDLERS: dict[str, Handler] = {"asns": _asn_upsert}
