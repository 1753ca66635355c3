"""Members' beacon secrets stay at HQ (issue 14): stores get the rotating identifiers instead.

Every member.upsert HQ records loses its ``beacon_secret`` and gains a ``member.beacon_ids`` change
with the identifiers of the previous window and the next 24 hours (tenpo.shared.beacon_id); a
bootstrap snapshot sends the same as its ``beacon_ids`` entity; the scheduled job
(tenpo.cloud.beacon_jobs) sends fresh ones for every member before the issued ones run out. The
member app gets its secret from HQ, never from a store.
"""

from __future__ import annotations

from typing import Any

from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple
from tenpo.shared.beacon_id import ISSUE_WINDOWS, issue_start, issued_ids

KIND = "member.beacon_ids"


def ids_change(member_id: str, secret_hex: str | None, now: float) -> ChangeTuple | None:
    """The member.beacon_ids change for a member's secret (None when there is none or it is malformed)."""
    if not secret_hex:
        return None
    try:
        secret = bytes.fromhex(secret_hex)
        first = issue_start(now)
        ids = issued_ids(secret, first, ISSUE_WINDOWS)
    except ValueError:
        return None
    return (KIND, member_id, None, {"member_id": member_id, "first_window": first, "ids": ids})


def without_secrets(db: Central, changes: list[ChangeTuple], now: float) -> list[ChangeTuple]:
    """The changes as stores may see them: no beacon secret in a member.upsert, and after the changes
    a member.beacon_ids for each member upserted (its secret read here if the record did not carry it)."""
    if not any(kind == "member.upsert" for kind, _key, _store, _data in changes):
        return changes
    kept: list[ChangeTuple] = []
    extra: list[ChangeTuple] = []
    for kind, key, store, data in changes:
        if kind == "member.upsert":
            secret = data.get("beacon_secret") if "beacon_secret" in data else db.scalar(
                "SELECT beacon_secret FROM members WHERE member_id = ? AND erased = 0", (data.get("member_id"),)
            )  # fmt: skip
            data = {k: v for k, v in data.items() if k != "beacon_secret"}
            change = ids_change(str(data.get("member_id")), secret, now)
            if change is not None:
                extra.append(change)
        kept.append((kind, key, store, data))
    return kept + extra


def snapshot_rows(db: Central, after: str, limit: int, now: float) -> tuple[list[dict[str, Any]], str | None]:
    """A bootstrap's ``beacon_ids`` entity: one row per member with a secret, in member_id order."""
    found = db.all(
        "SELECT member_id, beacon_secret FROM members WHERE member_id > ? AND erased = 0"
        " AND beacon_secret IS NOT NULL ORDER BY member_id LIMIT ?",
        (after, limit),
    )
    rows = [change[3] for member_id, secret in found if (change := ids_change(member_id, secret, now)) is not None]
    return rows, (found[-1][0] if found else None)
