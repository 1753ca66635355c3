"""Status queries shared by `tenpo cloud status` and the HQ monitor (`tenpo hq`), so both always agree.

Each function is one query over the central database; `status_report` composes them for the CLI and
the monitor composes the same ones (it keeps throughput buckets between refreshes, see
``tenpo.cloud.hq.data``). Times are passed in (``now``) so a caller can pin the clock.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from tenpo.cloud.db import Central
from tenpo.cloud.sales import conflicts as sales_conflicts

STORE_COLUMNS = (
    "store_id", "name", "online", "last_seen", "last_applied_seq", "events_applied", "dead_letters",
    "agent_version", "schema_version", "backlog", "oldest_pending_age_s", "cursor", "skew_ms", "newest_event_hlc",
)  # fmt: skip
HLC_COUNTER_BITS = 16  # HLC = (unix millis << 16) | counter (tenpo.shared.hlc)
MINUTE_S = 60.0
DEFAULT_BUCKET_S = 10.0  # throughput is counted in buckets of this many seconds of applied_at


def table_exists(db: Central, name: str) -> bool:
    """Areas add tables in their own migrations, possibly after this process started: ask each time."""
    if db.dialect == "sqlite":
        return db.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)) is not None
    return db.scalar("SELECT to_regclass(?)", (name,)) is not None


@dataclass(frozen=True, slots=True)
class Link:
    """A store's link as both `tenpo cloud status` and the monitor report it (see :func:`link`)."""

    online: bool
    last_seen: float | None  # HQ clock: the last birth, status, death or batch from the store
    seen_age_s: float | None
    backlog: int | None  # unsent events the store last reported
    skew_ms: int | None  # store clock minus HQ clock, measured when that report arrived


def link(online: bool, last_seen: float | None, backlog: int | None, skew_ms: int | None, now: float) -> Link:
    """The one place a store's seen age, backlog and skew are derived: the CLI passes the stores row,
    the monitor the same row updated by live (never retained) presence messages."""
    age = None if last_seen is None else round(max(0.0, now - float(last_seen)), 3)
    return Link(bool(online), None if last_seen is None else float(last_seen), age,
                None if backlog is None else int(backlog), None if skew_ms is None else int(skew_ms))  # fmt: skip


def format_age(seconds: float | None) -> str:
    """An age in its largest whole unit: 45s, 2m, 3h, 1d."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def format_skew(skew_ms: int | None) -> str:
    """Skew with its unit in at most six characters: +2ms, -1.5s, -265s, +4m."""
    if skew_ms is None:
        return "-"
    size = abs(skew_ms)
    sign = "-" if skew_ms < 0 else "+"
    if size < 1000:
        return f"{sign}{size}ms"
    if size < 10_000:
        return f"{sign}{size / 1000:.1f}s"
    seconds = size // 1000
    if seconds < 1000:
        return f"{sign}{seconds}s"
    for unit, unit_s in (("d", 86400), ("h", 3600)):
        if seconds >= unit_s:
            return f"{sign}{seconds // unit_s}{unit}"
    return f"{sign}{seconds // 60}m"


def store_records(db: Central, now: float | None = None) -> list[dict[str, Any]]:
    """One dict per registered store, straight from the stores table, plus the lag of its newest event
    and its :func:`link` figures (``seen_age_s``)."""
    now = time.time() if now is None else now
    now_ms = int(now * 1000)
    result = []
    for row in db.all(f"SELECT {', '.join(STORE_COLUMNS)} FROM stores ORDER BY store_id"):
        record = dict(zip(STORE_COLUMNS, row))
        record["online"] = bool(record["online"])
        newest = record.pop("newest_event_hlc")
        record["newest_event_ms"] = (int(newest) >> HLC_COUNTER_BITS) if newest else None
        record["lag_s"] = round((now_ms - record["newest_event_ms"]) / 1000, 3) if newest else None
        figures = link(record["online"], record["last_seen"], record["backlog"], record["skew_ms"], now)
        record.update(last_seen=figures.last_seen, seen_age_s=figures.seen_age_s, backlog=figures.backlog,
                      skew_ms=figures.skew_ms)  # fmt: skip
        result.append(record)
    return result


def bucket_expression(db: Central, column: str) -> str:
    """SQL for ``floor(column / ?)``, the bucket number of a positive epoch time (one parameter: bucket_s)."""
    # PostgreSQL's CAST rounds, SQLite's truncates; times are positive, so both become floor().
    return f"CAST(floor({column} / ?) AS BIGINT)" if db.dialect == "postgresql" else f"CAST({column} / ? AS INTEGER)"


def applied_buckets(db: Central, since: float, until: float, bucket_s: float) -> dict[tuple[str, int], int]:
    """Events applied in [since, until) per (store, bucket number); bucket n covers [n*bucket_s, (n+1)*bucket_s)."""
    bucket = bucket_expression(db, "applied_at")
    rows = db.all(
        f"SELECT store_id, {bucket}, count(*) FROM events WHERE applied_at >= ? AND applied_at < ? GROUP BY 1, 2",
        (float(bucket_s), since, until),
    )
    return {(store_id, int(number)): int(count) for store_id, number, count in rows}


def first_minute_bucket(now: float, bucket_s: float) -> int:
    """The oldest whole bucket inside the last minute: "events per minute" counts from its start."""
    return math.ceil((now - MINUTE_S) / bucket_s)


def per_minute(buckets: dict[tuple[str, int], int], now: float, bucket_s: float) -> dict[str, int]:
    """Per store, the events of the buckets that lie in the last minute (pure: the monitor keeps its buckets)."""
    first = first_minute_bucket(now, bucket_s)
    counts: dict[str, int] = {}
    for (store_id, number), count in buckets.items():
        if number >= first:
            counts[store_id] = counts.get(store_id, 0) + count
    return counts


def events_last_minute(db: Central, now: float, bucket_s: float = DEFAULT_BUCKET_S) -> dict[str, int]:
    since = first_minute_bucket(now, bucket_s) * bucket_s
    return per_minute(applied_buckets(db, since, now + 1e-6, bucket_s), now, bucket_s)


def open_conflicts(db: Central) -> dict[str, int] | None:
    """Open conflicts per store, or None while the sales migration has not created the conflicts table."""
    if not table_exists(db, "conflicts"):
        return None
    return {str(k): int(v) for k, v in sales_conflicts.open_counts_by_store(db).items()}


def dead_letter_totals(db: Central) -> tuple[int, int]:
    """(all dead letters, open ones)."""
    row = db.one("SELECT count(*), coalesce(sum(CASE WHEN status = 'open' THEN 1 ELSE 0 END), 0) FROM dead_letters")
    return (int(row[0]), int(row[1])) if row else (0, 0)


def latest_change(db: Central) -> int:
    return int(db.scalar("SELECT value FROM counters WHERE name = 'change'", (), 0))


def store_rows(db: Central, now: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    records = store_records(db, now)
    per_minute = events_last_minute(db, now)
    conflicts = open_conflicts(db)
    for record in records:
        record["events_last_minute"] = per_minute.get(record["store_id"], 0)
        record["open_conflicts"] = None if conflicts is None else conflicts.get(record["store_id"], 0)
    return records


def totals(db: Central, stores: list[dict[str, Any]]) -> dict[str, Any]:
    all_dead, open_dead = dead_letter_totals(db)
    conflicts = open_conflicts(db)
    return {
        "stores": len(stores),
        "online": sum(1 for s in stores if s["online"]),
        "events_applied": sum(int(s["events_applied"]) for s in stores),
        "events_last_minute": sum(int(s.get("events_last_minute") or 0) for s in stores),
        "dead_letters": all_dead,
        "open_dead_letters": open_dead,
        "open_conflicts": None if conflicts is None else sum(conflicts.values()),
        "latest_change": latest_change(db),
        "members": int(db.scalar("SELECT count(*) FROM members WHERE erased = 0", (), 0)),
    }


def status_report(db: Central, now: float | None = None) -> dict[str, Any]:
    """``as_of``: the HQ clock every age in the report is measured against."""
    now = time.time() if now is None else now
    stores = store_rows(db, now)
    return {"as_of": now, "stores": stores, "totals": totals(db, stores)}
