"""Field-level last writer wins for a member's profile and consent, by hybrid logical clock.

A member's profile is edited in three places that may be offline from each other: the member app (through
HQ), a store's clerk terminal (its ``member.updated`` reaches HQ whenever the store is back) and HQ itself.
Each field keeps the clock of the edit that set it (``name``, ``kana``, ``phone``, ``email``, ``card_no``,
``line_user_id``, and every consent purpose on its own as ``consent.PURPOSE``). An edit sets a field only
if its stamp is newer than the field's; so two concurrent edits of different fields both survive, and
the order edits arrive in does not matter, only when they were made.

A stamp is (hybrid logical time, origin): the packed HLC of tenpo.shared.hlc (wall-clock milliseconds and a
counter), then the origin name to break a tie. For consent, a withdrawal beats a grant made at the same
instant: when in doubt, the member did not agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

PLAIN_FIELDS: Final[tuple[str, ...]] = ("name", "kana", "phone", "email", "card_no", "line_user_id")
CONSENT_PREFIX: Final = "consent."


class Stamp(NamedTuple):
    hlc: int
    origin: str


class FieldValue(NamedTuple):
    stamp: Stamp
    value: Any


def edited_fields(changes: Mapping[str, Any], consent: Mapping[str, bool] | None) -> dict[str, Any]:
    """An edit as clock fields: the plain fields given (not None) and one ``consent.PURPOSE`` per purpose."""
    fields = {name: changes[name] for name in PLAIN_FIELDS if changes.get(name) is not None}
    for purpose, granted in (consent or {}).items():
        fields[CONSENT_PREFIX + purpose] = bool(granted)
    return fields


def newer(edit: Stamp, value: Any, held: FieldValue | None, field: str) -> bool:
    """Does an edit stamped ``edit`` setting ``value`` win over what the field holds?"""
    if held is None:
        return True
    if edit.hlc != held.stamp.hlc:
        return edit.hlc > held.stamp.hlc
    if field.startswith(CONSENT_PREFIX) and bool(value) != bool(held.value):
        return not bool(value)  # the same instant: a withdrawal wins over a grant
    return edit.origin > held.stamp.origin


def merge(held: Mapping[str, FieldValue], fields: Mapping[str, Any], stamp: Stamp) -> tuple[dict[str, Any], list[str]]:
    """Which of ``fields`` an edit stamped ``stamp`` sets (name → value), and which it loses (older)."""
    applied: dict[str, Any] = {}
    kept: list[str] = []
    for field, value in fields.items():
        if newer(stamp, value, held.get(field), field):
            applied[field] = value
        else:
            kept.append(field)
    return applied, sorted(kept)


def with_consent(consent: Mapping[str, bool], applied: Mapping[str, Any]) -> dict[str, bool]:
    """The member's consent with the applied ``consent.PURPOSE`` fields set (the other purposes as they were)."""
    merged = dict(consent)
    for field, value in applied.items():
        if field.startswith(CONSENT_PREFIX):
            merged[field[len(CONSENT_PREFIX):]] = bool(value)
    return dict(sorted(merged.items()))
