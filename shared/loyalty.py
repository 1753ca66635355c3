"""Loyalty rules as pure functions: points lots with an expiry date, first in first out, and member ranks.

Both sides use these: HQ to write expiry entries and compute ranks (tenpo.cloud.loyalty), the store to
know, offline, how many of a member's points are still good and at which rank a sale earns
(tenpo.edge.loyalty). Dates are JST calendar dates (``date``); times are unix seconds. docs/loyalty.md
states the rules in words.

A lot is what one accrual left: ``points`` that stay good through ``expires_on`` (JST, inclusive).
Redemptions and other negative entries use up the lot that expires first (then the one earned first).
A negative entry larger than all lots leaves a ``debt`` (a balance below zero); the next accrual pays the
debt before it becomes a lot. Lots past their date are expired; the sum expired is what HQ's ``expiry``
entries in the ledger must add up to, so writing the difference is idempotent (:func:`expiry_due`).
"""

from __future__ import annotations

import functools
import heapq
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta, timezone
from typing import Any, NamedTuple

JST = timezone(timedelta(hours=9), "JST")
EXPIRY_KIND = "expiry"  # the ledger kind of HQ's expiry entries (and of their corrections)
DEFAULT_EXPIRY_MONTHS = 12
DEFAULT_WINDOW_MONTHS = 12
MAX_MULTIPLIER_PCT = 10_000


class LoyaltyConfigError(ValueError):
    """A loyalty configuration that cannot be used; the message names the field."""


# ---------------------------------------------------------------------------- dates


_EPOCH = date(1970, 1, 1).toordinal()


def jst_date(at: float) -> date:
    """The JST calendar date of unix time ``at`` (JST has no daylight saving: a fixed +9 h)."""
    return _day(int((at + 9 * 3600) // 86400))


@functools.lru_cache(maxsize=65536)
def _day(days: int) -> date:
    return date.fromordinal(_EPOCH + days)


def add_months(day: date, months: int) -> date:
    """``day`` moved by ``months`` calendar months, clamped to the end of a shorter month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, _month_days(year, month + 1)))


def _month_days(year: int, month: int) -> int:
    following = date(year + month // 12, month % 12 + 1, 1)
    return (following - timedelta(days=1)).day


@functools.lru_cache(maxsize=65536)
def month_end_expiry(earned_on: date, months: int) -> date:
    """The last day a lot earned on ``earned_on`` is good: the end of the JST month ``months`` after the
    month it was earned in (earned 2025-12-15, 12 months: good through 2026-12-31)."""
    later = add_months(earned_on.replace(day=1), months)
    return later.replace(day=_month_days(later.year, later.month))


# ---------------------------------------------------------------------------- lots


class Entry(NamedTuple):
    """One points ledger entry as the lot rules see it: when it happened (the sale time, or HQ's time for
    its own entries), the change, its kind, and, for campaign points, their own last good day."""

    at: float
    delta: int
    kind: str = "accrual"
    expires_on: date | None = None
    key: int = 0  # ties at the same time keep ledger order


class Lot(NamedTuple):
    earned_at: float
    expires_on: date
    points: int


@dataclass(frozen=True, slots=True)
class Replay:
    lots: tuple[Lot, ...]  # what is left and still good at ``as_of``, expiring first first
    expired: int  # points expired up to ``as_of`` (what HQ's expiry entries must add up to)
    debt: int  # points spent beyond every lot (a balance below zero), not yet paid back
    written: int  # points HQ's expiry entries already took (minus what their corrections gave back)
    raw: int  # the sum of every entry but the expiry ones

    @property
    def balance(self) -> int:
        """The balance once everything due has expired."""
        return self.raw - self.expired


def replay(entries: Iterable[Entry], *, as_of: date, months: int = DEFAULT_EXPIRY_MONTHS) -> Replay:
    """Run a member's ledger in time order and say which lots are left, and how much expired by ``as_of``.

    A lot expires on the first day after ``expires_on``, but never later than ``as_of``: an entry that
    happened before the lot's end uses it up first, whenever it reaches HQ. Entries of kind ``expiry`` are
    HQ's own earlier results and count only in ``written``. What expires is never more than the balance
    (``raw``): points a store let a member spend after their end (it could not know) are not taken twice.
    """
    heap: list[tuple[date, float, int, list[int]]] = []  # (expires_on, earned_at, n, [points left])
    push, pop = heapq.heappush, heapq.heappop
    expired = debt = written = raw = n = 0
    # One pass, kept lean: the nightly job runs it for every member with news (bench/bench_loyalty.py).
    for at, delta, kind, until, _key in sorted(entries, key=_IN_ORDER):
        if kind == EXPIRY_KIND:
            written -= delta
            continue
        raw += delta
        day = jst_date(at)
        cutoff = day if day < as_of else as_of
        while heap and heap[0][0] < cutoff:  # lots that ended before this entry's day
            expired += pop(heap)[3][0]
        if delta > 0:
            if debt:
                paid = min(debt, delta)
                debt -= paid
                delta -= paid
            if delta:
                n += 1
                push(heap, (until or month_end_expiry(day, months), at, n, [delta]))
        elif delta < 0:
            need = -delta
            while need and heap:
                left = heap[0][3]
                used = min(left[0], need)
                left[0] -= used
                need -= used
                if left[0] == 0:
                    pop(heap)
            debt += need
    while heap and heap[0][0] < as_of:
        expired += pop(heap)[3][0]
    lots = tuple(Lot(at, until, left[0]) for until, at, _n, left in sorted(heap))
    return Replay(lots, min(expired, max(raw, 0)), debt, written, raw)


_IN_ORDER = operator.itemgetter(0, 4)  # an Entry's (at, key): ties at the same time keep ledger order


def expiry_due(entries: Iterable[Entry], *, as_of: date, months: int = DEFAULT_EXPIRY_MONTHS) -> int:
    """The delta of the expiry entry to append now (0: nothing to do). Negative takes expired points;
    positive gives back what an earlier expiry took that a redemption made before the lot's end had in fact
    used (an offline sale that reached HQ after the expiry job). Running it again right after gives 0."""
    result = replay(entries, as_of=as_of, months=months)
    return result.written - result.expired


def expiring(lots: Iterable[Lot]) -> list[tuple[date, int]]:
    """Points per last good day, soonest first: [(2026-12-31, 120), ...]."""
    by_day: dict[date, int] = {}
    for lot in lots:
        if lot.points > 0:
            by_day[lot.expires_on] = by_day.get(lot.expires_on, 0) + lot.points
    return sorted(by_day.items())


def usable(lots: Iterable[tuple[date, int]], local: Iterable[Entry], *, today: date, balance: int,
           months: int = DEFAULT_EXPIRY_MONTHS) -> tuple[int, list[tuple[date, int]]]:  # fmt: skip
    """At a store: of ``balance`` (HQ's plus the store's own entries since), how many points are still good
    ``today``, and what is left per last good day. ``lots`` are HQ's (as of its last run), ``local`` the
    store's entries HQ had not counted; points the store cannot place in a lot (others' accruals) stay good."""
    seed = [Entry(0.0, points, "accrual", until, -i) for i, (until, points) in enumerate(lots) if points > 0]
    result = replay([*seed, *local], as_of=today, months=months)
    gone = min(result.expired, max(balance, 0))
    return balance - gone, expiring(result.lots)


# ---------------------------------------------------------------------------- ranks


@dataclass(frozen=True, slots=True)
class Rank:
    name: str
    threshold: int  # yen of rolling spend from which a member holds this rank
    multiplier_pct: int  # points earned at this rank, in percent of the base rate (150 = x1.5)


DEFAULT_RANKS = (
    Rank("レギュラー", 0, 100),
    Rank("シルバー", 50_000, 150),
    Rank("ゴールド", 100_000, 200),
    Rank("プラチナ", 300_000, 300),
)


@dataclass(frozen=True, slots=True)
class LoyaltyConfig:
    expiry_months: int = DEFAULT_EXPIRY_MONTHS
    window_months: int = DEFAULT_WINDOW_MONTHS
    ranks: tuple[Rank, ...] = DEFAULT_RANKS

    def rank_for(self, spend: int) -> Rank:
        """The highest rank whose threshold ``spend`` reaches (the first rank below every threshold)."""
        held = self.ranks[0]
        for rank in self.ranks:
            if spend >= rank.threshold:
                held = rank
        return held

    def multiplier_of(self, name: str | None) -> int | None:
        for rank in self.ranks:
            if rank.name == name:
                return rank.multiplier_pct
        return None

    def window_start(self, as_of: date) -> date:
        """Spend counts from the day after this date through ``as_of`` (a rolling window)."""
        return add_months(as_of, -self.window_months)

    def as_json(self) -> dict[str, Any]:
        return {"expiry_months": self.expiry_months, "window_months": self.window_months,
                "ranks": [{"name": r.name, "threshold": r.threshold, "multiplier_pct": r.multiplier_pct}
                          for r in self.ranks]}  # fmt: skip


def parse_loyalty(document: Mapping[str, Any]) -> LoyaltyConfig:
    """The ``[loyalty]`` table of a TOML document (missing: the defaults); errors name the field."""
    table = document.get("loyalty", {})
    if not isinstance(table, Mapping):
        raise LoyaltyConfigError("[loyalty] must be a table")
    unknown = sorted(set(table) - {"expiry_months", "window_months", "ranks"})
    if unknown:
        raise LoyaltyConfigError(f"[loyalty] {unknown[0]}: unknown field (known: expiry_months, window_months, ranks)")
    months = _whole(table.get("expiry_months", DEFAULT_EXPIRY_MONTHS), "[loyalty] expiry_months", 1, 120)
    window = _whole(table.get("window_months", DEFAULT_WINDOW_MONTHS), "[loyalty] window_months", 1, 120)
    raw = table.get("ranks")
    if raw is None:
        return LoyaltyConfig(months, window)
    if not isinstance(raw, list) or not raw:
        raise LoyaltyConfigError("[loyalty] ranks: expected a non-empty array of tables [[loyalty.ranks]]")
    ranks: list[Rank] = []
    for i, item in enumerate(raw):
        where = f"[loyalty] ranks[{i}]"
        if not isinstance(item, Mapping):
            raise LoyaltyConfigError(f"{where}: expected a table")
        extra = sorted(set(item) - {"name", "threshold", "multiplier_pct"})
        if extra:
            raise LoyaltyConfigError(f"{where}.{extra[0]}: unknown field (known: name, threshold, multiplier_pct)")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 64 or not name.isprintable():
            raise LoyaltyConfigError(f"{where}.name: expected a printable name of 1 to 64 characters")
        threshold = _whole(item.get("threshold"), f"{where}.threshold", 0, 10**12)
        multiplier = _whole(item.get("multiplier_pct", 100), f"{where}.multiplier_pct", 0, MAX_MULTIPLIER_PCT)
        if ranks and threshold <= ranks[-1].threshold:
            raise LoyaltyConfigError(f"{where}.threshold: must be above the previous rank's {ranks[-1].threshold}")
        if any(r.name == name for r in ranks):
            raise LoyaltyConfigError(f"{where}.name: {name!r} is used twice")
        ranks.append(Rank(name, threshold, multiplier))
    if ranks[0].threshold != 0:
        raise LoyaltyConfigError("[loyalty] ranks[0].threshold: the first rank must start at 0 (everyone holds one)")
    return LoyaltyConfig(months, window, tuple(ranks))


def _whole(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LoyaltyConfigError(f"{where}: expected a whole number from {low} to {high}, got {value!r}")
    return value


def allowed_accrual(base: int, multiplier_pct: int) -> int:
    """The most points a sale whose x1 points were ``base`` may bring at ``multiplier_pct``. The store rounds
    once, after the multiplier, and ``base`` is itself rounded, so the yen behind it may be up to one x1 point
    more: (base + 1) x multiplier, rounded up, holds under every rounding a store may be configured with."""
    return -(-(max(base, 0) + 1) * multiplier_pct // 100)
