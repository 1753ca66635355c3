"""The stores table as values: database records and live presence in, one row of display cells out.

Pure functions only (no Textual, no I/O), so the rules about what needs attention are tested
directly and the UI does nothing but copy the cells that changed into its DataTable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from tenpo.cloud import status
from tenpo.cloud.hq.config import MonitorConfig
from tenpo.cloud.hq.presence import Presence

Value = TypeVar("Value")

# Attention levels, worst last; the whole row takes the level's style.
OK, WARN, OFFLINE, ALERT = "ok", "warn", "offline", "alert"
LEVEL_STYLE = {OK: "", WARN: "bold yellow", OFFLINE: "red", ALERT: "bold white on dark_red"}
LEVEL_RANK = {OK: 0, WARN: 1, OFFLINE: 2, ALERT: 3}

# (key, header, width): fixed widths, so a refresh never re-measures columns.
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("store", "Store", 7), ("name", "Name", 14), ("link", "Link", 5), ("seen", "Seen", 5),
    ("agent", "Agent/sch", 9), ("backlog", "Backlog", 7), ("lag", "Lag", 5), ("epm", "Ev/min", 6),
    ("dead", "Dead", 4), ("conflicts", "Confl", 5), ("skew", "Skew", 6), ("trend", "Ev/s trend", 12),
)  # fmt: skip
COLUMN_KEYS = tuple(key for key, _, _ in COLUMNS)
SPARK_CHARS = "▁▂▃▄▅▆▇█"

Cell = tuple[str, str]  # (text, style)


@dataclass(frozen=True, slots=True)
class StoreView:
    store_id: str
    name: str
    online: bool
    since: float | None  # when it came online / went offline, as far as we know
    last_seen: float | None
    seen_age_s: float | None  # at the refresh that built this view
    agent_version: str | None
    schema_version: int | None
    backlog: int | None
    lag_s: float | None
    events_per_min: int
    dead_letters: int
    open_conflicts: int | None  # None: no conflicts table yet
    skew_ms: int | None
    trend: tuple[int, ...]  # events per bucket, oldest first
    level: str
    reasons: tuple[str, ...]


def attention(online: bool, since: float | None, backlog: int | None, skew_ms: int | None,
              config: MonitorConfig, now: float) -> tuple[str, tuple[str, ...]]:  # fmt: skip
    """(level, reasons): offline at once is red; offline longer than the threshold is an alert."""
    t = config.thresholds
    reasons: list[str] = []
    level = OK
    if not online:
        away = None if since is None else now - since
        if away is None or away > t.offline_after_s:
            level = ALERT
            reasons.append("offline" if away is None else f"offline {format_age(away)}")
        else:
            level = OFFLINE
            reasons.append("offline")
    if backlog is not None and backlog > t.backlog_above:
        reasons.append(f"backlog {backlog}")
        level = level if LEVEL_RANK[level] > LEVEL_RANK[WARN] else WARN
    if skew_ms is not None and abs(skew_ms) > t.skew_above_ms:
        reasons.append(f"clock skew {status.format_skew(skew_ms)}")
        level = level if LEVEL_RANK[level] > LEVEL_RANK[WARN] else WARN
    return level, tuple(reasons)


def merge_store(record: Mapping[str, Any], presence: Presence | None, events_per_min: int, conflicts: int | None,
                trend: Sequence[int], config: MonitorConfig, now: float) -> StoreView:  # fmt: skip
    """The stores row, updated by presence heard live after the row was written; the figures come
    from ``status.link``, the function `tenpo cloud status` uses. Retained presence (``seen_at`` None)
    only says online or not."""
    db_seen = record.get("last_seen")
    live = presence is not None and presence.seen_at is not None and (db_seen is None or presence.seen_at >= db_seen)
    online = presence.online if presence is not None else bool(record["online"])
    since = presence.changed_at if presence is not None and presence.changed_at is not None else db_seen

    def pick(mine: Value, theirs: Value | None) -> Value:
        return theirs if live and theirs is not None else mine

    figures = status.link(
        online, pick(db_seen, presence.seen_at if presence else None),
        pick(record.get("backlog"), presence.backlog if presence else None),
        pick(record.get("skew_ms"), presence.skew_ms if presence else None), now,
    )  # fmt: skip
    level, reasons = attention(online, since, figures.backlog, figures.skew_ms, config, now)
    return StoreView(
        store_id=record["store_id"], name=record.get("name") or "", online=online, since=since,
        last_seen=figures.last_seen, seen_age_s=figures.seen_age_s,
        agent_version=pick(record.get("agent_version"), presence.agent_version if presence else None),
        schema_version=pick(record.get("schema_version"), presence.schema_version if presence else None),
        backlog=figures.backlog, lag_s=record.get("lag_s"), events_per_min=events_per_min,
        dead_letters=int(record.get("dead_letters") or 0), open_conflicts=conflicts, skew_ms=figures.skew_ms,
        trend=tuple(trend), level=level, reasons=reasons,
    )  # fmt: skip


# ---------------------------------------------------------------------------- formatting

format_age = status.format_age  # shared with `tenpo cloud status`


def format_count(value: int | None) -> str:
    if value is None:
        return "-"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value // 1000}k"
    return str(value)


@lru_cache(maxsize=8192)  # most rows' trends are unchanged from one refresh to the next
def trend_text(trend: tuple[int, ...], width: int) -> str:
    return spark(trend, width)


def spark(values: Sequence[float], width: int | None = None) -> str:
    """A text sparkline: one block per value, scaled to the largest (blank for an all-zero span)."""
    values = list(values)[-width:] if width else list(values)
    top = max(values, default=0)
    if top <= 0:
        return SPARK_CHARS[0] * len(values)
    last = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[min(last, int(v / top * last + 0.5))] for v in values)


def row_cells(view: StoreView, now: float) -> tuple[Cell, ...]:
    style = LEVEL_STYLE[view.level]
    link = ("on", style or "green") if view.online else ("OFF", style)
    agent = "-" if view.agent_version is None else f"{view.agent_version}/{view.schema_version or '-'}"
    skew = status.format_skew(view.skew_ms)
    lag = format_age(view.lag_s) if view.lag_s is not None else "-"
    conflicts = "-" if view.open_conflicts is None else str(view.open_conflicts)
    texts = (
        view.store_id, view.name, link[0], format_age(None if view.last_seen is None else now - view.last_seen),
        agent, format_count(view.backlog), lag, format_count(view.events_per_min), str(view.dead_letters), conflicts,
        skew, trend_text(view.trend, 12),
    )  # fmt: skip
    cells = [(text, style) for text in texts]
    cells[2] = link
    return tuple(cells)


def changed_cells(old: Sequence[Cell] | None, new: Sequence[Cell]) -> list[int]:
    """Indexes of the cells to repaint (all of them for a new row)."""
    if old is None:
        return list(range(len(new)))
    return [i for i, (a, b) in enumerate(zip(old, new)) if a != b]


SORT_KEYS: dict[str, Callable[[StoreView], Any]] = {
    "store": lambda v: v.store_id,
    "name": lambda v: v.name,
    "link": lambda v: (v.online, v.store_id),
    "seen": lambda v: v.last_seen or 0.0,
    "agent": lambda v: (v.agent_version or "", v.schema_version or 0),
    "backlog": lambda v: v.backlog or 0,
    "lag": lambda v: v.lag_s if v.lag_s is not None else -1.0,
    "epm": lambda v: v.events_per_min,
    "dead": lambda v: v.dead_letters,
    "conflicts": lambda v: v.open_conflicts or 0,
    "skew": lambda v: abs(v.skew_ms or 0),
    "trend": lambda v: sum(v.trend),
}


def attention_first(view: StoreView) -> Any:
    return (-LEVEL_RANK[view.level], view.store_id)


def ordered(views: Sequence[StoreView], column: str | None, reverse: bool) -> list[str]:
    """Store ids in display order: by ``column``, or stores needing attention first (the default)."""
    if column is None:
        return [v.store_id for v in sorted(views, key=attention_first)]
    key = SORT_KEYS[column]
    return [v.store_id for v in sorted(views, key=lambda v: (key(v), v.store_id), reverse=reverse)]
