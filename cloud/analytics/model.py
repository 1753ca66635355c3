"""Purchase rows and per-member totals: the values every analysis starts from. Pure.

A *purchase* is one store receipt (``kind`` sale), one store refund (``kind`` refund: it lowers the
monetary value and is not a purchase of its own) or one imported web order (counted as a sale when its
status is a paid one; its total is already net of discounts and refunds). ``day`` is the JST date.
``items`` are the SKUs the purchase rang up (refunds carry none).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

JST = dt.timezone(dt.timedelta(hours=9), "JST")


@dataclass(frozen=True, slots=True)
class Purchase:
    purchase_id: str  # "store:S001:<stream>:<receipt>" or "order:<channel>:<order id>"
    customer: str | None  # the golden member id, None for an anonymous sale
    channel: str  # "store" or the order's channel ("web", "line", ...)
    store_id: str | None  # the store of a store sale or refund
    day: dt.date  # JST
    amount: int  # yen paid, tax included, net of discounts; negative for a refund
    is_sale: bool  # False for a refund
    items: frozenset[str]

    @property
    def scope(self) -> str:
        """Where the purchase counts for per-store figures: "store:S001", or "channel:web"."""
        return f"store:{self.store_id}" if self.store_id else f"channel:{self.channel}"


@dataclass(frozen=True, slots=True)
class MemberTotals:
    """One member's RFM inputs (all time): what the incremental table keeps per member."""

    customer: str
    first_day: dt.date
    first_purchase: str  # purchase id of the first sale (ties on a day: the smallest id)
    first_channel: str
    second_day: dt.date | None  # day of the second sale (F2), None while there is one
    second_purchase: str | None
    last_day: dt.date
    frequency: int
    monetary: int


def jst_day(iso: str) -> dt.date:
    """The JST date of an ISO 8601 time; one without an offset is taken as UTC. ValueError if unreadable."""
    at = dt.datetime.fromisoformat(iso.strip().replace("Z", "+00:00"))
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.astimezone(JST).date()


def today_jst() -> dt.date:
    return dt.datetime.now(JST).date()


def member_totals(customer: str, purchases: Iterable[Purchase], as_of: dt.date | None = None) -> MemberTotals | None:
    """Totals of one member's purchases up to ``as_of`` (all if None); None without a sale."""
    sales: list[tuple[dt.date, str, str]] = []
    monetary = 0
    for p in purchases:
        if as_of is not None and p.day > as_of:
            continue
        monetary += p.amount
        if p.is_sale:
            sales.append((p.day, p.purchase_id, p.channel))
    if not sales:
        return None
    sales.sort()
    first_day, first_id, first_channel = sales[0]
    second = sales[1] if len(sales) > 1 else None
    return MemberTotals(customer, first_day, first_id, first_channel, second[0] if second else None,
                        second[1] if second else None, sales[-1][0], len(sales), monetary)  # fmt: skip


def accumulate(acc: dict[str, list[Any]], p: Purchase) -> None:
    """Fold one purchase (any order) into ``acc`` (customer -> running totals); ``finish`` gives what
    ``member_totals`` gives. A full pass over millions of purchases uses this: no object per step."""
    if p.customer is None:
        return
    state = acc.get(p.customer)
    if state is None:  # [first (day, id, channel), second (day, id), last day, frequency, monetary]
        state = acc[p.customer] = [None, None, None, 0, 0]
    state[4] += p.amount
    if not p.is_sale:
        return
    state[3] += 1
    if state[2] is None or p.day > state[2]:
        state[2] = p.day
    key = (p.day, p.purchase_id, p.channel)
    if state[0] is None or key[:2] < state[0][:2]:
        state[1] = state[0][:2] if state[0] is not None else None
        state[0] = key
    elif state[1] is None or key[:2] < state[1]:
        state[1] = key[:2]


def finish(acc: dict[str, list[Any]]) -> list[MemberTotals]:
    """Members with at least one sale."""
    return [MemberTotals(c, first[0], first[1], first[2], second[0] if second else None, second[1] if second else None,
                         last, frequency, monetary)
            for c, (first, second, last, frequency, monetary) in acc.items() if first is not None]  # fmt: skip


def totals_by_member(purchases: Iterable[Purchase], as_of: dt.date | None = None) -> dict[str, MemberTotals]:
    """``member_totals`` of every member with a sale."""
    grouped: dict[str, list[Purchase]] = {}
    for p in purchases:
        if p.customer is not None:
            grouped.setdefault(p.customer, []).append(p)
    result = {}
    for customer, rows in grouped.items():
        totals = member_totals(customer, rows, as_of)
        if totals is not None:
            result[customer] = totals
    return result
