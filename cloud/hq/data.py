"""The monitor's one database connection, used from worker threads one at a time.

Throughput buckets are kept between refreshes: each refresh re-counts only the newest buckets, so
a refresh costs the same with ten minutes of history for 500 stores as with none.
"""

from __future__ import annotations

import gc
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenpo.cloud import certs, status
from tenpo.cloud.authority_check import refusals_by_store
from tenpo.cloud.db import Central
from tenpo.cloud.hq import actions, conflicts, queries
from tenpo.cloud.hq.config import MonitorConfig
from tenpo.cloud.hq.trends import IncidentTrend, incident_trend
from tenpo.cloud.reconnect import connection_lost, reconnect


@dataclass(frozen=True, slots=True)
class Overview:
    records: list[dict[str, Any]]
    per_minute: dict[str, int]
    conflicts: dict[str, int] | None
    trends: dict[str, tuple[int, ...]]  # per store, events per bucket, oldest first
    total_rate: tuple[float, ...]  # events/s per bucket, all stores
    dead_letters: int
    open_dead_letters: int
    latest_change: int
    now: float
    query_ms: float
    cert_expiring: tuple[tuple[str, float], ...] = ()  # (store, days left) within the warning (issue 14)
    authority: tuple[tuple[str, int], ...] = ()  # (store, events refused by store authority in 24 h) (issue 14)


class Throughput:
    """Event counts per bucket and store over the sparkline window, refreshed incrementally.

    The series shows whole buckets only, so it changes when the window moves or a whole bucket is
    re-counted, not on every refresh; it is rebuilt only then.
    """

    def __init__(self, bucket_s: float, buckets: int) -> None:
        self.bucket_s = bucket_s
        self.buckets = buckets
        self.by_bucket: dict[int, dict[str, int]] = {}
        self._synced: int | None = None  # newest bucket counted by the last refresh
        # (first bucket, per store, total rate, total count) as last built, and the oldest bucket re-counted
        # differently since: the buckets before it are copied from there when the window moves on.
        self._series: tuple[int, dict[str, tuple[int, ...]], tuple[float, ...], tuple[int, ...]] | None = None
        self._changed_from: int | None = None

    def refresh(self, db: Central, now: float) -> None:
        current = math.floor(now / self.bucket_s)
        first = current - self.buckets  # the window's whole buckets, plus the current one for "per minute"
        # Re-count from one bucket before the last one seen: an apply stamped just before a boundary may
        # commit just after our last read.
        since = first if self._synced is None else max(first, self._synced - 1)
        fresh: dict[int, dict[str, int]] = {}
        for (store_id, number), count in status.applied_buckets(db, since * self.bucket_s, now + 1e-6, self.bucket_s).items():
            fresh.setdefault(number, {})[store_id] = count
        changed = next((n for n in range(since, current) if self.by_bucket.get(n, {}) != fresh.get(n, {})), None)
        for number in [n for n in self.by_bucket if n < first or n >= since]:
            del self.by_bucket[number]
        self.by_bucket.update(fresh)
        if changed is not None:
            self._changed_from = changed if self._changed_from is None else min(self._changed_from, changed)
        self._synced = current

    def series(self, now: float) -> tuple[dict[str, tuple[int, ...]], tuple[float, ...]]:
        """Per store and in total, the last ``buckets`` whole buckets (the current, partial one would
        always look like a drop). When the window moves on, the buckets that did not change are copied
        from the last series: 500 stores times 60 buckets re-walked every tenth refresh was its slow tail."""
        first = math.floor(now / self.bucket_s) - self.buckets
        cached = self._series
        if cached is not None and cached[0] == first and self._changed_from is None:
            return cached[1], cached[2]
        reuse, offset = 0, 0
        if cached is not None and cached[0] <= first:
            offset = first - cached[0]
            valid_end = cached[0] + self.buckets if self._changed_from is None else self._changed_from
            reuse = max(0, min(valid_end, cached[0] + self.buckets) - first)
        tail = [0] * (self.buckets - reuse)
        per_store: dict[str, list[int]] = {}
        total = list(tail)
        if cached is not None and reuse:
            per_store = {store_id: [*counts[offset : offset + reuse], *tail] for store_id, counts in cached[1].items()}
            total = [*cached[3][offset : offset + reuse], *tail]
        for index in range(reuse, self.buckets):
            for store_id, count in self.by_bucket.get(first + index, {}).items():
                per_store.setdefault(store_id, [0] * self.buckets)[index] = count
                total[index] += count
        result = ({k: tuple(v) for k, v in per_store.items() if any(v)}, tuple(c / self.bucket_s for c in total))
        self._series = (first, *result, tuple(total))
        self._changed_from = None
        return result

    def per_minute(self, now: float) -> dict[str, int]:
        """The same count as ``status.events_last_minute`` (whole buckets in the last minute), from memory."""
        counts: dict[str, int] = {}
        for number in range(status.first_minute_bucket(now, self.bucket_s), math.floor(now / self.bucket_s) + 1):
            for store_id, count in self.by_bucket.get(number, {}).items():
                counts[store_id] = counts.get(store_id, 0) + count
        return counts


# The monitor holds a large heap for its whole life (Textual's widgets and caches, ~250,000 objects) and
# each refresh allocates a few thousand objects that live until the next. With Python's default
# thresholds those get promoted and trigger a full collection every few refreshes, which walks the
# whole heap and was the slow tail of a refresh. A larger first generation lets them die young, and
# the heap at the first refresh (the app, built once) is frozen out of every later collection.
GC_THRESHOLD = (25_000, 10, 10)
AUTHORITY_WINDOW_S = 86_400.0  # the monitor's authority alert counts the last day's refusals


def settle_gc() -> None:
    """Collect once and freeze what is alive; raise the first-generation threshold (process-wide)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def collect_young() -> None:
    """Collect the youngest generation now: after a repaint, while the screen is idle. Textual's
    rendered lines hold themselves in their caches (cycles only the collector frees); collected here,
    they are not left for the next refresh to trip over."""
    gc.collect(0)


_T = TypeVar("_T")


class HqData:
    """Every read and action the monitor performs; one call at a time (the lock), from any thread."""

    def __init__(self, db_url: str, config: MonitorConfig, clock: Callable[[], float] = time.time) -> None:
        self.db_url = db_url
        self.db = Central(db_url)
        self.config = config
        self.clock = clock
        self.throughput = Throughput(config.bucket_s, config.buckets)
        self._lock = threading.Lock()
        self._gc_settled = False  # settle_gc() runs once, at the first refresh (the app is built by then)

    def _revive(self) -> None:
        """Before an action (a write, never repeated here): a connection known to be gone is opened again."""
        if connection_lost(self.db):
            reconnect(self.db)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def _reading(self, read: Callable[[], _T]) -> _T:
        """Run ``read`` (under the lock); if PostgreSQL dropped the connection (a failover, a restart), open a
        new one and read again. A server still away raises here: this refresh fails, the next one tries again."""
        try:
            if connection_lost(self.db):
                reconnect(self.db)
            return read()
        except Exception as exc:
            if not connection_lost(self.db, exc):
                raise
            reconnect(self.db)
            return read()

    def _read_overview(self, now: float) -> tuple[Any, ...]:
        records = status.store_records(self.db, now)
        self.throughput.refresh(self.db, now)
        conflict_counts = status.open_conflicts(self.db)
        all_dead, open_dead = status.dead_letter_totals(self.db)
        latest = status.latest_change(self.db)
        expiring = tuple(certs.expiring(self.db, now)) if status.table_exists(self.db, "store_certificates") else ()
        refused = tuple(refusals_by_store(self.db, now - AUTHORITY_WINDOW_S).items())  # docs/authority.md
        return records, conflict_counts, all_dead, open_dead, latest, expiring, refused

    def overview(self) -> Overview:
        with self._lock:
            started = time.perf_counter()
            now = self.clock()
            records, conflict_counts, all_dead, open_dead, latest, expiring, refused = self._reading(
                lambda: self._read_overview(now))
            trends, total = self.throughput.series(now)
            per_minute = self.throughput.per_minute(now)
            elapsed = (time.perf_counter() - started) * 1000
        if not self._gc_settled:
            self._gc_settled = True
            settle_gc()
        return Overview(records, per_minute, conflict_counts, trends, total, all_dead, open_dead, latest, now, elapsed,
                        expiring, refused)  # fmt: skip

    def store_detail(self, store_id: str) -> tuple[queries.StoreDetail | None, tuple[float, ...]]:
        with self._lock:
            detail = self._reading(lambda: queries.store_detail(self.db, store_id))
            trends, _ = self.throughput.series(self.clock())
        rate = tuple(c / self.config.bucket_s for c in trends.get(store_id, (0,) * self.config.buckets))
        return detail, rate

    def incident_trend(self) -> IncidentTrend:
        with self._lock:
            return self._reading(lambda: incident_trend(self.db, self.clock()))

    def dead_letters(self, include_closed: bool = False) -> list[queries.DeadLetter]:
        with self._lock:
            return self._reading(lambda: queries.dead_letters(self.db, include_closed=include_closed))

    def retry(self, dead_letter_id: int) -> actions.RetryOutcome:
        with self._lock:
            self._revive()
            return actions.retry_dead_letter(self.db, dead_letter_id)

    def discard(self, dead_letter_id: int, note: str) -> None:
        with self._lock:
            self._revive()
            actions.discard_dead_letter(self.db, dead_letter_id, note)

    def conflicts(self) -> list[conflicts.ConflictRow] | None:
        with self._lock:
            return self._reading(lambda: conflicts.list_open(self.db))

    def resolve_conflict(self, conflict_id: str, action: str, note: str) -> Any:
        with self._lock:
            self._revive()
            return conflicts.resolve(self.db, conflict_id, action, note)
