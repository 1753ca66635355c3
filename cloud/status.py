"""Status queries shared by `tenpo cloud status` and the HQ monitor, so both always agree."""

from __future__ import annotations

import time
from typing import Any

from tenpo.cloud.db import Central

STORE_COLUMNS = (
    "store_id", "name", "online", "last_seen", "last_applied_seq", "events_applied", "dead_letters",
    "agent_version", "schema_version", "backlog", "oldest_pending_age_s", "cursor", "skew_ms", "newest_event_hlc",
)  # fmt: skip


def store_rows(db: Central) -> list[dict[str, Any]]:
    rows = db.all(f"SELECT {', '.join(STORE_COLUMNS)} FROM stores ORDER BY store_id")
    now_ms = int(time.time() * 1000)
    result = []
    for row in rows:
        record = dict(zip(STORE_COLUMNS, row))
        record["online"] = bool(record["online"])
        newest = record.pop("newest_event_hlc")
        record["lag_s"] = round((now_ms - (newest >> 16)) / 1000, 3) if newest else None
        result.append(record)
    return result


def totals(db: Central, stores: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "stores": len(stores),
        "online": sum(1 for s in stores if s["online"]),
        "events_applied": sum(int(s["events_applied"]) for s in stores),
        "dead_letters": int(db.scalar("SELECT count(*) FROM dead_letters", (), 0)),
        "open_dead_letters": int(db.scalar("SELECT count(*) FROM dead_letters WHERE status = 'open'", (), 0)),
        "latest_change": int(db.scalar("SELECT value FROM counters WHERE name = 'change'", (), 0)),
        "members": int(db.scalar("SELECT count(*) FROM members WHERE erased = 0", (), 0)),
    }


def status_report(db: Central) -> dict[str, Any]:
    stores = store_rows(db)
    return {"stores": stores, "totals": totals(db, stores)}
