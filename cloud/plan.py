"""The pieces every HQ event planner uses: where an event came from, the plan it adds rows to,
and payload field readers that raise :class:`PayloadError` naming the field."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from tenpo.shared.protocol import Event

if TYPE_CHECKING:
    from tenpo.cloud.db import Central

ChangeTuple = tuple[str, str, "str | None", dict[str, Any]]  # (kind, key, store or None, data)
Hook = Callable[["Central", float], list[ChangeTuple]]


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
    # Run in the apply transaction after the rows are written (conflict checks, derived views); each may
    # return extra change-feed entries. Keyed so one batch runs a check once, not once per event.
    hooks: dict[str, Hook] = field(default_factory=dict)

    def add(self, sql: str, params: tuple[Any, ...]) -> None:
        self.rows.setdefault(sql, []).append(params)


def text_field(payload: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise PayloadError(f"{key}: missing")
        return None
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{key}: must be a non-empty string")
    return value


def int_field(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{key}: must be an integer")
    return value


def dict_field(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PayloadError(f"{key}: must be an object")
    return json.dumps(value, ensure_ascii=False, sort_keys=True)




Planner = Callable[[Plan, Origin, Event, float], None]
