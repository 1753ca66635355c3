"""Decoded JSON into a msgspec Struct, with an error that names the offending field: what every catalogue (events,
changes, the channel API) reports to whoever sent a bad payload. Split from tenpo.shared.events, which re-exports it."""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import msgspec


class PayloadMismatch(ValueError):
    """A payload that does not fit its Struct; ``field`` is the offending path (``rates[0].tax``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


class UnknownEvent(ValueError):
    """An event type, or a schema number of a known type, that is not in the catalogue."""


_AT = re.compile(r"^(?P<problem>.*?) - at `\$\.?(?P<path>[^`]*)`$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")

S = TypeVar("S", bound=msgspec.Struct)


def mismatch(exc: msgspec.ValidationError) -> PayloadMismatch:
    """msgspec's ``Expected `int` <= ... - at `$.rates[0].tax``` as ``rates[0].tax: expected ...``."""
    text = str(exc)
    path, problem = "", text
    found = _AT.match(text)
    if found:
        path, problem = found["path"], found["problem"]
    missing = _MISSING.match(problem)
    if missing:
        path = f"{path}.{missing['name']}" if path else missing["name"]
        problem = "missing"
    problem = problem.replace("`", "")
    return PayloadMismatch(path, problem[:1].lower() + problem[1:])


def _choices(struct: type[msgspec.Struct], name: str) -> tuple[str, ...]:
    """The values a Literal field of ``struct`` allows (empty for any other field)."""
    hint = get_type_hints(struct).get(name)
    options = get_args(hint) if get_origin(hint) is Literal else ()
    return tuple(str(option) for option in options)


def convert(data: Any, struct: type[S]) -> S:
    """``data`` (decoded JSON) as ``struct``; raises PayloadMismatch naming the field."""
    try:
        return msgspec.convert(data, struct)
    except msgspec.ValidationError as exc:
        error = mismatch(exc)
        choices = _choices(struct, error.field) if error.problem.startswith("invalid enum value") else ()
        if choices:
            error = PayloadMismatch(error.field, f"{error.problem}: must be one of {', '.join(choices)}")
        raise error from None
