"""RFM: recency, frequency, monetary per member, scores 1-5 and named segments. Pure.

Scores come from four cut points per measure, configured or the quintiles of the members analysed:
the cut points are the values at 20/40/60/80 % of the sorted values (the "lower" quantile:
``sorted[floor(q * (n - 1))]``). ``f`` and ``m`` = 1 + the number of cut points the value exceeds;
``r`` = 5 - the number of cut points the recency (days) exceeds, so the most recent score 5.
The first configured segment whose conditions hold names the member.
"""

from __future__ import annotations

import datetime as dt
import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .config import AnalyticsConfig, Segment

QUINTILES = (0.2, 0.4, 0.6, 0.8)


@dataclass(frozen=True, slots=True)
class RfmInput:
    member_id: str
    last_day: dt.date
    frequency: int
    monetary: int


@dataclass(frozen=True, slots=True)
class RfmRow:
    member_id: str
    recency_days: int
    frequency: int
    monetary: int
    r: int
    f: int
    m: int
    segment: str
    last_purchase: str  # ISO date (JST)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def quantile_cuts(values: Sequence[int]) -> tuple[int, ...]:
    """The values at 20/40/60/80 % (lower); () for no values."""
    if not values:
        return ()
    ordered = sorted(values)
    n = len(ordered)
    return tuple(ordered[math.floor(q * (n - 1))] for q in QUINTILES)


def score_up(value: int, cuts: Sequence[int]) -> int:
    """1-5: higher values score higher (frequency, monetary)."""
    return 1 + sum(value > c for c in cuts)


def score_down(value: int, cuts: Sequence[int]) -> int:
    """1-5: lower values score higher (recency in days)."""
    return 5 - sum(value > c for c in cuts)


def segment_of(segments: Iterable[Segment], r: int, f: int, m: int, frequency: int, recency_days: int) -> str:
    for segment in segments:
        if segment.matches(r, f, m, frequency, recency_days):
            return segment.name
    return "その他"


def rfm_rows(inputs: Iterable[RfmInput], as_of: dt.date, config: AnalyticsConfig) -> list[RfmRow]:
    """Scores and segments of every member given (members with at least one purchase), by member id.
    A million members: the scores by bisection over the sorted cut points (what score_up/score_down count),
    the segment looked up once per distinct (r, f, m, frequency, recency)."""
    items = sorted(inputs, key=lambda i: i.member_id)
    recency = [(as_of - i.last_day).days for i in items]
    r_cuts = config.recency_cuts if config.recency_cuts is not None else quantile_cuts(recency)
    f_cuts = config.frequency_cuts if config.frequency_cuts is not None else quantile_cuts([i.frequency for i in items])
    m_cuts = config.monetary_cuts if config.monetary_cuts is not None else quantile_cuts([i.monetary for i in items])
    r_sorted, f_sorted, m_sorted = sorted(r_cuts), sorted(f_cuts), sorted(m_cuts)
    named: dict[tuple[int, int, int, int, int], str] = {}
    rows = []
    for item, days in zip(items, recency):
        r = 5 - bisect_left(r_sorted, days)  # the cuts below a value are the cuts it exceeds
        f, m = 1 + bisect_left(f_sorted, item.frequency), 1 + bisect_left(m_sorted, item.monetary)
        key = (r, f, m, item.frequency, days)
        segment = named.get(key)
        if segment is None:
            segment = named[key] = segment_of(config.segments, r, f, m, item.frequency, days)
        rows.append(
            RfmRow(item.member_id, days, item.frequency, item.monetary, r, f, m, segment, item.last_day.isoformat())
        )
    return rows


def segment_counts(rows: Iterable[RfmRow], segments: Iterable[Segment]) -> list[tuple[str, int]]:
    """Members per segment, in the configured order (empty segments included), then any others."""
    counts: dict[str, int] = {s.name: 0 for s in segments}
    for row in rows:
        counts[row.segment] = counts.get(row.segment, 0) + 1
    return list(counts.items())


def grid(rows: Iterable[RfmRow]) -> list[list[int]]:
    """Members per (r, f) cell: grid[r - 1][f - 1], for the heatmap."""
    cells = [[0] * 5 for _ in range(5)]
    for row in rows:
        cells[row.r - 1][row.f - 1] += 1
    return cells
