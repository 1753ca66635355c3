"""The series the monitor's charts draw: events per minute per store (from the throughput buckets the
stores table already keeps) and new dead letters and conflicts per interval (one query each)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from tenpo.cloud import status
from tenpo.cloud.db import Central

INCIDENT_BUCKET_S = 300.0  # dead letters and conflicts per five minutes ...
INCIDENT_BUCKETS = 12  # ... over the last hour
OTHERS = "others"


@dataclass(frozen=True, slots=True)
class IncidentTrend:
    bucket_s: float
    dead_letters: tuple[int, ...]  # received per bucket, oldest first; the last bucket is the current one
    conflicts: tuple[int, ...] | None  # detected per bucket; None while there is no conflicts table


def incident_trend(db: Central, now: float, bucket_s: float = INCIDENT_BUCKET_S,
                   buckets: int = INCIDENT_BUCKETS) -> IncidentTrend:  # fmt: skip
    first = math.floor(now / bucket_s) - buckets + 1

    def per_bucket(table: str, column: str) -> tuple[int, ...]:
        rows = db.all(f"SELECT {status.bucket_expression(db, column)}, count(*) FROM {table} WHERE {column} >= ? GROUP BY 1",
                      (float(bucket_s), first * bucket_s))  # fmt: skip
        counts = dict.fromkeys(range(first, first + buckets), 0)
        for number, count in rows:
            if int(number) in counts:
                counts[int(number)] = int(count)
        return tuple(counts.values())

    conflicts = per_bucket("conflicts", "detected_at") if status.table_exists(db, "conflicts") else None
    return IncidentTrend(bucket_s, per_bucket("dead_letters", "received_at"), conflicts)


def per_minute_series(trends: Mapping[str, tuple[int, ...]], bucket_s: float, top: int = 6) -> dict[str, tuple[float, ...]]:
    """Events per minute per bucket for the ``top`` busiest stores, the rest summed as "others" (pure)."""
    scale = 60.0 / bucket_s
    busiest = sorted(trends, key=lambda s: (-sum(trends[s]), s))
    series = {s: tuple(c * scale for c in trends[s]) for s in busiest[:top] if sum(trends[s]) > 0}
    rest = [trends[s] for s in busiest[top:]]
    if rest and any(map(sum, rest)):
        series[OTHERS] = tuple(sum(column) * scale for column in zip(*rest))
    return series
