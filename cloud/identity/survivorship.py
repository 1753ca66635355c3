"""Survivorship: which source record's value wins each field of a golden record. Pure.

A rule is an ordered list of criteria; the record ranked first that has a value wins, ties fall to
the next criterion and finally to the record key, so the outcome never depends on input order.
Fields that belong together (name with its reading, address with its postal code) survive as a
group: the companions come from the winning record, or from another record that agrees on the
lead value, never from an unrelated record (an old reading must not sit under a new surname).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .records import RecordKey, SourceRecord

__all__ = ["GoldenRecord", "SurvivorshipRules", "golden_record"]

Criterion = Literal["verified", "recent", "complete", "source", "frequent"]
"""verified: a channel verified it; recent: newest updated_at; complete: longest value;
source: earlier in SurvivorshipRules.source_priority; frequent: the value most records agree on."""

_DEFAULT_RULES: dict[str, tuple[Criterion, ...]] = {
    "name": ("verified", "recent", "source"),  # the newest name follows a marriage
    "email": ("verified", "recent"),
    "phone": ("verified", "recent", "frequent"),
    "postal_code": ("recent", "complete"),  # the newest address follows a move
    "birth_date": ("frequent", "source", "recent"),  # a single mistyped date is outvoted
    "card_no": ("recent", "source"),
}
_DEFAULT_GROUPS = {"name": ("kana",), "postal_code": ("address",)}


@dataclass(frozen=True, slots=True)
class SurvivorshipRules:
    """Per-field criteria, the field groups that survive together, and the channels in order of trust."""

    rules: Mapping[str, tuple[Criterion, ...]] = field(default_factory=lambda: dict(_DEFAULT_RULES))
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(_DEFAULT_GROUPS))
    source_priority: tuple[str, ...] = ("store", "web", "line", "marketplace")
    custom_rule: tuple[Criterion, ...] = ("recent",)  # for every custom field of the chain


@dataclass(frozen=True, slots=True)
class GoldenRecord:
    """The surviving value of each field and the source record it came from."""

    values: Mapping[str, Any]
    provenance: Mapping[str, RecordKey]
    custom: Mapping[str, Any]
    sources: tuple[RecordKey, ...]


def _rank_key(record: SourceRecord, value: Any, field_name: str, criteria: Sequence[Criterion],
              rules: SurvivorshipRules, votes: Counter[Any]) -> tuple[Any, ...]:
    parts: list[Any] = []
    for criterion in criteria:
        if criterion == "verified":
            parts.append(0 if field_name in record.verified else 1)
        elif criterion == "recent":
            parts.append(_descending(record.updated_at))
        elif criterion == "complete":
            parts.append(-len(str(value)))
        elif criterion == "source":
            priority = rules.source_priority
            parts.append(priority.index(record.source) if record.source in priority else len(priority))
        elif criterion == "frequent":
            parts.append(-votes[value])
    parts.append(record.key)
    return tuple(parts)


@functools.lru_cache(maxsize=1 << 16)  # every refresh of a member ranks the same timestamps again
def _descending(text: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in text) + (1,)  # later ISO timestamps first; "" last


def _winner(records: Sequence[SourceRecord], field_name: str, values: Sequence[Any],
            criteria: Sequence[Criterion], rules: SurvivorshipRules) -> int | None:
    candidates = [i for i, value in enumerate(values) if value not in (None, "")]
    if len(candidates) < 2:  # one value (or none): nothing to rank
        return candidates[0] if candidates else None
    # Votes only count for the "frequent" criterion: most fields' rules never read them.
    votes = Counter(values[i] for i in candidates) if "frequent" in criteria else _NO_VOTES
    return min(candidates, key=lambda i: _rank_key(records[i], values[i], field_name, criteria, rules, votes))


_NO_VOTES: Counter[Any] = Counter()  # read only (a Counter's missing key is 0 and is not stored)


def golden_record(records: Sequence[SourceRecord], rules: SurvivorshipRules = SurvivorshipRules()) -> GoldenRecord:
    """Golden record of one cluster's source records."""
    if not records:
        raise ValueError("a golden record needs at least one source record")
    values: dict[str, Any] = {}
    provenance: dict[str, RecordKey] = {}
    for lead, criteria in rules.rules.items():
        column = [getattr(record, lead) for record in records]
        winner = _winner(records, lead, column, criteria, rules)
        values[lead] = column[winner] if winner is not None else None
        if winner is not None:
            provenance[lead] = records[winner].key
        for companion in rules.groups.get(lead, ()):
            values[companion] = None
            if winner is None:
                continue
            # Companion from the winner, else from the best-ranked record agreeing on the lead value.
            agreeing = [i for i, value in enumerate(column) if value == column[winner]]
            if len(agreeing) > 1:
                agreeing.sort(key=lambda i: (i != winner, _rank_key(records[i], column[i], lead, criteria, rules,
                                                                    _NO_VOTES)))
            for i in agreeing:
                if getattr(records[i], companion):
                    values[companion] = getattr(records[i], companion)
                    provenance[companion] = records[i].key
                    break
    custom: dict[str, Any] = {}
    for name in sorted({key for record in records for key in record.custom}):
        column = [record.custom.get(name) for record in records]
        winner = _winner(records, name, column, rules.custom_rule, rules)
        if winner is not None:
            custom[name] = column[winner]
    return GoldenRecord(values, provenance, custom, tuple(sorted(record.key for record in records)))
