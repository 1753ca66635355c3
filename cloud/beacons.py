"""Members' beacon secrets stay at HQ (issue 14): stores get the rotating identifiers instead.

Every member.upsert HQ records loses its ``beacon_secret`` and gains a ``member.beacon_ids`` change
with the identifiers of the previous window and the next two hours (UPSERT_WINDOWS: a registration
or an import pays 13 HMACs per member, not a day's 145); the scheduled job (tenpo.cloud.beacon_jobs)
tops every member up to 24 hours before the issued ones run out, from ``beacon_issue`` (cloud
migration 15: how far the feed has issued each member). A bootstrap snapshot sends 24 hours as its
``beacon_ids`` entity. The member app gets its secret from HQ, never from a store.
"""

from __future__ import annotations

from typing import Any

from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple
from tenpo.shared.beacon_id import ISSUE_WINDOWS, issue_start, issued_ids

KIND = "member.beacon_ids"
UPSERT_WINDOWS = 13
"""Identifiers sent with a member.upsert: the previous window and two hours ahead; the job tops up."""


def ids_change(member_id: str, secret_hex: str | None, now: float, count: int = ISSUE_WINDOWS) -> ChangeTuple | None:
    """The member.beacon_ids change for a member's secret (None when there is none or it is malformed)."""
    if not secret_hex:
        return None
    try:
        secret = bytes.fromhex(secret_hex)
        first = issue_start(now)
        ids = issued_ids(secret, first, count)
    except ValueError:
        return None
    return (KIND, member_id, None, {"member_id": member_id, "first_window": first, "ids": ids})


def last_window(change: ChangeTuple) -> int:
    data = change[3]
    return int(data["first_window"]) + len(data["ids"]) // 16 - 1


def note_issued(db: Central, issued: list[ChangeTuple]) -> None:
    """Remember the last window the feed now covers for each member (a store replaces what it held)."""
    if issued:
        db.executemany(
            "INSERT INTO beacon_issue(name, until_window) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET until_window = excluded.until_window",
            [(change[1], last_window(change)) for change in issued],
        )


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
            change = ids_change(str(data.get("member_id")), secret, now, UPSERT_WINDOWS)
            if change is not None:
                extra.append(change)
        kept.append((kind, key, store, data))
    note_issued(db, extra)
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
