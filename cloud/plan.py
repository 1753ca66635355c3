"""The pieces every HQ event planner uses: where an event came from, the plan it adds rows to,
and the payload decoder that raises :class:`PayloadError` naming the field."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tenpo.shared.events import Payload, PayloadMismatch, UnknownEvent, decode_payload
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


def decode(event: Event) -> Payload:
    """The event's payload as its catalogue Struct (tenpo.shared.events); PayloadError names the field."""
    try:
        return decode_payload(event.type, event.schema, event.payload)
    except (UnknownEvent, PayloadMismatch) as exc:
        raise PayloadError(str(exc)) from None


Decoded = dict[int, Payload]  # id(event) -> its payload Struct, for the events of a batch that decode


def decode_each(events: list[Event]) -> Decoded:
    """A batch's payloads decoded once for its whole apply: the authority check and the planners both read
    them (an event missing here did not decode; its planner decodes it again to name the field)."""
    decoded: Decoded = {}
    for event in events:
        try:
            decoded[id(event)] = decode_payload(event.type, event.schema, event.payload)
        except (UnknownEvent, PayloadMismatch):
            continue
    return decoded


def as_json(value: object) -> str:
    """A payload's object field (consent, custom, summary) as the JSON text HQ stores."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


# (plan, origin, event, the event's payload decoded into its catalogue Struct, now)
Planner = Callable[[Plan, Origin, Event, Any, float], None]
