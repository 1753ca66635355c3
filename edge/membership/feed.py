"""Change-feed kinds this area defines (kind -> handler); merged into tenpo.edge.feed.CHANGE_HANDLERS.

A handler is ``handler(conn, store_id, rows, version)``: apply ``rows`` (change data dicts) inside the
caller's transaction; ``version`` is the change seq (None in a snapshot: use ``row["version"]``).
"""

from __future__ import annotations

from typing import Any, Callable
import sqlite3

Handler = Callable[[sqlite3.Connection, str, list[dict[str, Any]], "int | None"], None]

CHANGE_HANDLERS: dict[str, Handler] = {}
SNAPSHOT_HANDLERS: dict[str, Handler] = {}
