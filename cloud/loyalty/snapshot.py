"""The ``loyalty`` entity of a store's bootstrap snapshot: every member's ``member.loyalty`` as HQ last sent it
(rank, multiplier, lots), so a new or wiped store earns at each member's rank from its first sale."""

from __future__ import annotations

import json
from typing import Any

from tenpo.cloud.db import Central

LOYALTY_EXPIRY_MONTHS_DEFAULT = 12


def loyalty_rows(db: Central, store_id: str, after: str | None, limit: int,
                 as_of: int) -> tuple[list[dict[str, Any]], str | None]:  # fmt: skip
    """Rows sent up to the snapshot's ``as_of`` only: a newer one reaches the store through the feed it replays
    from there, so what the store holds never runs ahead of its cursor (HQ checks an accrual's multiplier
    against the rank sent at or below the sale's ``feed_cursor``)."""
    found = db.all(
        "SELECT l.member_id, l.rank, l.multiplier_pct, l.spend, l.as_of, l.lots, l.version FROM loyalty_members l"
        " JOIN members m ON m.member_id = l.member_id AND m.erased = 0 WHERE l.member_id > ? AND l.version <= ?"
        " ORDER BY l.member_id LIMIT ?", (after or "", as_of, limit))  # fmt: skip
    if not found:
        return [], None
    raw = db.scalar("SELECT value FROM loyalty_settings WHERE name = 'config'")
    months = int(json.loads(raw).get("expiry_months", LOYALTY_EXPIRY_MONTHS_DEFAULT)) if raw else LOYALTY_EXPIRY_MONTHS_DEFAULT
    # As the members entity: the lots count this store's entries up to what HQ has applied of it.
    through = {store_id: int(db.scalar("SELECT last_applied_seq FROM stores WHERE store_id = ?", (store_id,), 0))}
    rows = [{"member_id": m, "rank": rank, "multiplier_pct": int(pct), "spend": int(spend), "as_of": as_of,
             "expiry_months": months, "lots": json.loads(lots), "through": through, "version": int(version)}
            for m, rank, pct, spend, as_of, lots, version in found]  # fmt: skip
    return rows, found[-1][0]
