"""Members' beacon secrets stay at HQ (issue 14): stores get per-day keys instead.

Every member.upsert HQ records loses its ``beacon_secret`` and gains a ``member.beacon_keys`` change
with the member's day keys (tenpo.shared.beacon_id.day_key) for today and tomorrow in JST: two HMACs
and 2 × 16 bytes per member. The daily job (tenpo.cloud.beacon_jobs) sends every member the next day's
key a day ahead, from ``beacon_issue`` (cloud migration 15: the last window of the last day the feed
has given each member). A bootstrap snapshot sends the same two keys as its ``beacon_keys`` entity.
The member app gets its secret from HQ, never from a store.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple
from tenpo.shared.beacon_id import (
    DAY_DOMAIN,
    DAY_KEY_LEN,
    DAY_S,
    WINDOW_S,
    check_secret,
    day_start,
    jst_day,
    next_day,
    window_of,
)

KIND = "member.beacon_keys"


@functools.lru_cache(maxsize=8)
def _days(today: str) -> tuple[tuple[str, bytes], ...]:
    """Today's and tomorrow's day with its day_key message: the same for every member at one moment."""
    return tuple((day, DAY_DOMAIN + day.encode("ascii")) for day in (today, next_day(today)))


def day_keys_at(now: float) -> Callable[[bytes], list[tuple[str, bytes]]]:
    """tenpo.shared.beacon_id.day_keys(secret, now) for many secrets: the days are worked out once, each
    secret costs its two HMACs (a feed write of thousands of members, issue 16 §8; the same keys)."""
    days = _days(jst_day(now))

    def keys(secret: bytes) -> list[tuple[str, bytes]]:
        secret = check_secret(secret)
        return [(day, hmac.digest(secret, message, "sha256")[:DAY_KEY_LEN]) for day, message in days]

    return keys


def keys_change(member_id: str, secret_hex: str | None, now: float,
                keys_of: Callable[[bytes], list[tuple[str, bytes]]] | None = None) -> ChangeTuple | None:  # fmt: skip
    """The member.beacon_keys change for a member's secret (None when there is none or it is malformed);
    `keys_of`: day_keys_at(now), made once for many members."""
    if not secret_hex:
        return None
    try:
        keys = (keys_of or day_keys_at(now))(bytes.fromhex(secret_hex))
    except ValueError:
        return None
    data = {"member_id": member_id, "keys": [{"day": day, "key": key.hex()} for day, key in keys]}
    return (KIND, member_id, None, data)


@functools.lru_cache(maxsize=8)
def _day_end_window(day: str) -> int:
    return window_of(day_start(day) + DAY_S - 1, WINDOW_S)


def last_window(change: ChangeTuple) -> int:
    """The last window the change's keys cover (the end of its last day)."""
    return _day_end_window(max(k["day"] for k in change[3]["keys"]))


def note_issued(db: Central, issued: list[ChangeTuple]) -> None:
    """Remember the last window the feed now covers for each member."""
    if issued:
        db.executemany(
            "INSERT INTO beacon_issue(name, until_window) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET until_window = excluded.until_window",
            [(change[1], last_window(change)) for change in issued],
        )


def without_secrets(db: Central, changes: list[ChangeTuple], now: float) -> list[ChangeTuple]:
    """The changes as stores may see them: no beacon secret in a member.upsert, and after the changes
    a member.beacon_keys for each member upserted (its secret read here if the record did not carry it)."""
    if not any(kind == "member.upsert" for kind, _key, _store, _data in changes):
        return changes
    kept: list[ChangeTuple] = []
    extra: list[ChangeTuple] = []
    keys_of = day_keys_at(now)
    for kind, key, store, data in changes:
        if kind == "member.upsert":
            secret = data.get("beacon_secret") if "beacon_secret" in data else db.scalar(
                "SELECT beacon_secret FROM members WHERE member_id = ? AND erased = 0", (data.get("member_id"),)
            )  # fmt: skip
            data = {k: v for k, v in data.items() if k != "beacon_secret"}
            change = keys_change(str(data.get("member_id")), secret, now, keys_of)
            if change is not None:
                extra.append(change)
        kept.append((kind, key, store, data))
    note_issued(db, extra)
    return kept + extra


def snapshot_rows(db: Central, after: str, limit: int, now: float) -> tuple[list[dict[str, Any]], str | None]:
    """A bootstrap's ``beacon_keys`` entity: one row per member with a secret, in member_id order."""
    found = db.all(
        "SELECT member_id, beacon_secret FROM members WHERE member_id > ? AND erased = 0"
        " AND beacon_secret IS NOT NULL ORDER BY member_id LIMIT ?",
        (after, limit),
    )
    keys_of = day_keys_at(now)
    rows = [
        change[3] for member_id, secret in found if (change := keys_change(member_id, secret, now, keys_of)) is not None
    ]
    return rows, (found[-1][0] if found else None)
