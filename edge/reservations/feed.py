"""Change-feed kinds this area defines; merged into tenpo.edge.feed.CHANGE_HANDLERS (see the ASN area's)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from tenpo.edge.reservations.store import apply_upsert
from tenpo.shared.changes import ReservationUpsert, rows_of

Handler = Callable[[sqlite3.Connection, str, list[Any], "int | None"], None]


@rows_of(ReservationUpsert)
def _reservation_upsert(conn: sqlite3.Connection, store_id: str, rows: list[ReservationUpsert],
                        version: int | None) -> None:  # fmt: skip
    for row in rows:
        apply_upsert(conn, store_id, row, version)


CHANGE_HANDLERS: dict[str, Handler] = {"reservation.upsert": _reservation_upsert}
