"""Change-feed kinds this area defines (kind -> handler); merged into tenpo.edge.feed.CHANGE_HANDLERS.

A handler is ``handler(conn, store_id, rows, version)``: apply ``rows`` (change data, decoded into their
tenpo.shared.changes Structs) inside the caller's transaction; ``version`` is the change seq (None in a
snapshot: use ``row.version``).

Every store keeps every store's ASNs: its own to inspect against, the others to recognise a
cross-read from a neighbouring dock. A row that is not a valid ASN raises ValueError, which the
feed turns into a dead letter without stopping the page.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from tenpo.edge.inspection.store import save_asn, set_asn_status
from tenpo.shared.asn import asn_from_dict
from tenpo.shared.changes import AsnClosed, AsnUpsert, rows_of

Handler = Callable[[sqlite3.Connection, str, list[Any], "int | None"], None]

@rows_of(AsnUpsert)
def _asn_upsert(conn: sqlite3.Connection, store_id: str, rows: list[AsnUpsert], version: int | None) -> None:
    for row in rows:
        save_asn(conn, asn_from_dict(row.asn_fields()), "hq", version or row.version, row.status)


@rows_of(AsnClosed)
def _asn_closed(conn: sqlite3.Connection, store_id: str, rows: list[AsnClosed], version: int | None) -> None:
    for row in rows:
        set_asn_status(conn, row.shipment_id, row.status, version or row.version)


CHANGE_HANDLERS: dict[str, Handler] = {"asn.upsert": _asn_upsert, "asn.closed": _asn_closed}
SNAPSHOT_HANDLERS: dict[str, Handler] = {"asns": _asn_upsert}
