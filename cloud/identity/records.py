"""Values that identity resolution works on and hands back: source records, decisions, clusters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tenpo.shared.cleansing import MEMBER_FIELDS, FieldQuality

__all__ = ["Cluster", "FieldComparison", "MergeDecision", "RecordKey", "Resolution", "SourceRecord"]

RecordKey = tuple[str, str]
"""(source, source_id): one record as a channel knows it, e.g. ("store-012", "P-000123")."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One member record from one channel, already cleansed (see tenpo.shared.cleansing).

    `verified` names the fields the channel verified (a confirmed e-mail, an SMS-checked phone);
    `updated_at` is an ISO 8601 UTC timestamp and orders values for survivorship;
    `custom` carries a chain's own fields through untouched (no schema change needed).
    `quality` is how each member field fared in cleansing (tenpo.shared.cleansing.FieldQuality: valid,
    corrected, unverified, flagged or missing, with the raw text, rule and reason); a flagged field's
    value here is None, so matching and survivorship leave it out. Empty for records made before
    field quality was kept.
    """

    source: str
    source_id: str
    name: str | None = None
    kana: str | None = None
    email: str | None = None
    phone: str | None = None
    postal_code: str | None = None
    address: str | None = None
    birth_date: str | None = None
    card_no: str | None = None
    verified: frozenset[str] = frozenset()
    updated_at: str = ""
    custom: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False)
    quality: Mapping[str, FieldQuality] = field(default_factory=lambda: _EMPTY, compare=False)

    @property
    def key(self) -> RecordKey:
        return (self.source, self.source_id)

    @classmethod
    def from_clean(cls, clean: Mapping[str, Any], quality: Mapping[str, FieldQuality] | None = None) -> SourceRecord:
        """Build from the dict `cleanse_member_record` (or `assess_member_record`, with its `quality`)
        returns; unknown keys become custom fields."""
        known = {"source", "source_id", "verified", "updated_at", *MEMBER_FIELDS}
        custom = {key: value for key, value in clean.items() if key not in known and key != "prefecture"}
        custom.update(clean.get("custom") or {})
        custom.pop("custom", None)
        return cls(
            source=str(clean["source"]),
            source_id=str(clean["source_id"]),
            **{name: clean.get(name) for name in MEMBER_FIELDS},
            verified=frozenset(clean.get("verified") or ()),
            updated_at=str(clean.get("updated_at") or ""),
            custom=MappingProxyType(custom),
            quality=MappingProxyType(dict(quality or {})),
        )


@dataclass(frozen=True, slots=True)
class FieldComparison:
    """How one field compared between two records: level ("exact", "typo", "differ"...) and its weight."""

    field: str
    level: str
    weight: float


@dataclass(frozen=True, slots=True)
class MergeDecision:
    """Why two records were (or would be) linked: the rule, the score and every field comparison.

    `rule` is "card_no", "email" or "phone" for a deterministic link, "score" for a scored one and
    "manual" for a clerk's merge. Stored beside the golden record so a merge can be explained and undone.
    """

    left: RecordKey
    right: RecordKey
    rule: str
    score: float
    comparisons: tuple[FieldComparison, ...]

    @property
    def matched_fields(self) -> tuple[str, ...]:
        return tuple(c.field for c in self.comparisons if c.weight > 0)

    def explain(self) -> str:
        """One line for the HQ monitor: rule, score and the signed weight of every field."""
        parts = ", ".join(f"{c.field} {c.level} {c.weight:+g}" for c in self.comparisons)
        left, right = ":".join(self.left), ":".join(self.right)
        return f"{left} = {right} by {self.rule}, score {self.score:g} ({parts})"


@dataclass(frozen=True, slots=True)
class Cluster:
    """Records resolved to one person, with the decisions (a spanning tree) that joined them."""

    keys: tuple[RecordKey, ...]
    decisions: tuple[MergeDecision, ...]

    @property
    def anchor(self) -> RecordKey:
        """The smallest key: a stable handle while the caller assigns golden ids."""
        return self.keys[0]


@dataclass(frozen=True, slots=True)
class Resolution:
    """Result of resolving a batch: clusters, pairs left for review, and links refused for conflicts."""

    clusters: tuple[Cluster, ...]
    possible: tuple[MergeDecision, ...]  # scored between review and match threshold: for a human
    refused: tuple[MergeDecision, ...]  # would join clusters holding clearly different people
    pairs_compared: int
    oversized_blocks: int  # blocks skipped as too common to be evidence (a shop's own phone number)

    def cluster_of(self) -> dict[RecordKey, int]:
        """Index of the cluster each record key ended in."""
        return {key: index for index, cluster in enumerate(self.clusters) for key in cluster.keys}
