"""Repeat and retention: F2 conversion, repeat rate, cohort retention, LTV. Pure.

- **F2 転換率** of (first-purchase month, first channel): members whose first purchase fell in that month
  through that channel and who bought a second time within ``f2_days`` days of the first (both on or
  before the as-of date), divided by all such members.
- **Repeat rate**: members with two purchases or more / members with one or more.
- **Cohort retention**: cohort = month of the first purchase; for month offset k (0 = that month),
  the share of the cohort that bought in month cohort + k. Months after the as-of date are left out.
- **LTV** of a member: their monetary value (paid, net of discounts and refunds) up to the as-of date;
  a cohort's LTV is the mean over its members.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .model import MemberTotals, Purchase


def month_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_index(month: str) -> int:
    year, number = month.split("-")
    return int(year) * 12 + int(number) - 1


@dataclass(frozen=True, slots=True)
class F2Row:
    month: str
    channel: str
    members: int
    converted: int
    rate: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def f2_conversion(totals: Iterable[MemberTotals], f2_days: int) -> list[F2Row]:
    """Per (first month, first channel), sorted; ``totals`` already cut at the as-of date."""
    groups: dict[tuple[str, str], list[int]] = {}
    for t in totals:
        cell = groups.setdefault((month_of(t.first_day), t.first_channel), [0, 0])
        cell[0] += 1
        if t.second_day is not None and (t.second_day - t.first_day).days <= f2_days:
            cell[1] += 1
    return [F2Row(month, channel, n, converted, round(converted / n, 6))
            for (month, channel), (n, converted) in sorted(groups.items())]  # fmt: skip


def repeat_rate(totals: Iterable[MemberTotals]) -> dict[str, Any]:
    members = repeaters = 0
    for t in totals:
        members += 1
        repeaters += t.frequency >= 2
    return {"members": members, "repeaters": repeaters, "rate": round(repeaters / members, 6) if members else 0.0}


@dataclass(frozen=True, slots=True)
class CohortRow:
    cohort: str
    size: int
    retention: list[float]  # offset 0, 1, ... up to the as-of month
    active: list[int]
    ltv_mean: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def cohorts(purchases: Iterable[Purchase], totals: dict[str, MemberTotals], as_of: dt.date) -> list[CohortRow]:
    """The retention triangle and each cohort's mean LTV; ``totals`` cut at ``as_of``."""
    last = month_index(month_of(as_of))
    active: dict[str, dict[int, set[str]]] = {}
    for p in purchases:
        if not p.is_sale or p.customer is None or p.day > as_of or p.customer not in totals:
            continue
        first = totals[p.customer].first_day
        cohort = month_of(first)
        offset = month_index(month_of(p.day)) - month_index(cohort)
        active.setdefault(cohort, {}).setdefault(offset, set()).add(p.customer)
    members: dict[str, list[MemberTotals]] = {}
    for t in totals.values():
        members.setdefault(month_of(t.first_day), []).append(t)
    rows = []
    for cohort in sorted(members):
        size = len(members[cohort])
        span = last - month_index(cohort) + 1
        counts = [len(active.get(cohort, {}).get(k, ())) for k in range(span)]
        ltv = sum(t.monetary for t in members[cohort]) / size
        rows.append(CohortRow(cohort, size, [round(c / size, 6) for c in counts], counts, round(ltv, 2)))
    return rows


def ltv_rows(totals: Iterable[MemberTotals]) -> list[dict[str, Any]]:
    """LTV per member, by member id, with the member's cohort."""
    return [{"member_id": t.customer, "cohort": month_of(t.first_day), "first_channel": t.first_channel,
             "purchases": t.frequency, "ltv": t.monetary}
            for t in sorted(totals, key=lambda t: t.customer)]  # fmt: skip
