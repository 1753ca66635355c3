"""What each upstream event does at HQ, as pure planning: event in, rows to write out.

Planning validates the payload before anything touches the database, so a bad event becomes a
dead letter with a reason while the rest of its batch still applies. Rows are grouped by statement
and written with executemany; the ledgers have no cross-table constraints, so order across groups
does not matter, and order within a group is the store's order.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tenpo.shared.protocol import Event

MEMBER_FIELDS = ("name", "kana", "phone", "email", "card_no", "line_user_id", "home_store")

INSERT_MEMBER = (
    "INSERT INTO members(member_id, name, kana, phone, email, card_no, line_user_id, consent, custom, home_store,"
    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(member_id) DO NOTHING"
)
UPDATE_MEMBER = (
    "UPDATE members SET name = coalesce(?, name), kana = coalesce(?, kana), phone = coalesce(?, phone),"
    " email = coalesce(?, email), card_no = coalesce(?, card_no), line_user_id = coalesce(?, line_user_id),"
    " consent = coalesce(?, consent), custom = coalesce(?, custom), updated_at = ? WHERE member_id = ? AND erased = 0"
)
INSERT_STOCK = (
    "INSERT INTO stock_ledger(store_id, stream, sku, location, delta, reason, ref, store_seq, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_POINTS = (
    "INSERT INTO points_ledger(member_id, delta, kind, ref, store_id, stream, store_seq, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an event comes from: the store and the life of its database (stream)."""

    store_id: str
    stream: str


class PayloadError(ValueError):
    """The event's payload does not fit its type; the message says which field."""


@dataclass(slots=True)
class Plan:
    """Rows to write and which derived views (balances, levels, member records) to refresh."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    stock_touched: set[tuple[str, str]] = field(default_factory=set)  # (store_id, sku)
    points_touched: set[str] = field(default_factory=set)  # member ids
    members_touched: set[str] = field(default_factory=set)

    def add(self, sql: str, params: tuple[Any, ...]) -> None:
        self.rows.setdefault(sql, []).append(params)


def _text(payload: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise PayloadError(f"{key}: missing")
        return None
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{key}: must be a non-empty string")
    return value


def _int(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{key}: must be an integer")
    return value


def _dict(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PayloadError(f"{key}: must be an object")
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _member_registered(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    store_id = origin.store_id
    p = event.payload
    member_id = _text(p, "member_id")
    assert member_id is not None
    if not member_id.startswith(f"{store_id}-"):
        raise PayloadError(f"member_id: {member_id} is not a provisional id of store {store_id}")
    values = tuple(_text(p, key, required=False) for key in MEMBER_FIELDS)
    plan.add(
        INSERT_MEMBER,
        (member_id, *values[:6], _dict(p, "consent") or "{}", _dict(p, "custom") or "{}", values[6] or store_id, now, now),
    )
    plan.members_touched.add(member_id)


def _member_updated(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    store_id = origin.store_id
    p = event.payload
    member_id = _text(p, "member_id")
    assert member_id is not None
    values = tuple(_text(p, key, required=False) for key in MEMBER_FIELDS[:6])
    plan.add(UPDATE_MEMBER, (*values, _dict(p, "consent"), _dict(p, "custom"), now, member_id))
    plan.members_touched.add(member_id)


def _stock_moved(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    store_id = origin.store_id
    p = event.payload
    sku = _text(p, "sku")
    delta = _int(p, "delta")
    reason = _text(p, "reason")
    location = _text(p, "location", required=False) or "floor"
    plan.add(INSERT_STOCK, (store_id, origin.stream, sku, location, delta, reason, _text(p, "ref", False), event.seq, now))
    plan.stock_touched.add((store_id, sku))  # type: ignore[arg-type]


def _points_entry(plan: Plan, origin: Origin, event: Event, now: float) -> None:
    store_id = origin.store_id
    p = event.payload
    member_id = _text(p, "member_id")
    delta = _int(p, "delta")
    kind = _text(p, "kind")
    plan.add(INSERT_POINTS, (member_id, delta, kind, _text(p, "ref", False), store_id, origin.stream, event.seq, now))
    plan.points_touched.add(member_id)  # type: ignore[arg-type]


Planner = Callable[[Plan, Origin, Event, float], None]

PLANNERS: dict[str, Planner] = {
    "member.registered": _member_registered,
    "member.updated": _member_updated,
    "stock.adjusted": _stock_moved,
    "stock.moved": _stock_moved,
    "points.entry": _points_entry,
}


def plan_event(plan: Plan, origin: Origin, event: Event, now: float | None = None) -> None:
    """Add the event's rows to ``plan``; raises PayloadError (nothing added) when it cannot apply."""
    planner = PLANNERS.get(event.type)
    if planner is None:
        raise PayloadError(f"unknown event type {event.type!r}")
    if event.schema != 1:
        raise PayloadError(f"{event.type}: unsupported schema version {event.schema}")
    scratch = Plan()
    planner(scratch, origin, event, now or time.time())
    for sql, rows in scratch.rows.items():
        plan.rows.setdefault(sql, []).extend(rows)
    plan.stock_touched |= scratch.stock_touched
    plan.points_touched |= scratch.points_touched
    plan.members_touched |= scratch.members_touched
