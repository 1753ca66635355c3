"""Match weights from a chain's own records, by expectation maximisation. Pure.

The Fellegi–Sunter model behind `compare`: a pair is a match with prior probability λ; given match
status, each field's comparison level is independent, with probability m (matches) or u (non-matches)
per level; a level's weight is log2(m/u). Without labels, EM alternates between the probability that
each pair is a match (E) and the λ, m and u those probabilities imply (M) (Winkler 1988; Enamorado,
Fifield & Imai 2019, fastLink; Splink's `estimate_parameters_using_expectation_maximisation`). As in
Splink, u is best estimated from random pairs (nearly all non-matches) and held fixed while EM finds
m among the blocked candidate pairs. A missing value is no evidence: that field is left out of the
pair's likelihood. Identical comparison vectors are counted once with a multiplicity, so EM costs
the number of distinct patterns, not pairs.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import combinations

from .compare import MatchWeights, compare, features, learn_readings, with_learnt_reading
from .matching import MatchConfig, candidate_pairs, resolve
from .records import RecordKey, SourceRecord

__all__ = ["FIELDS", "Estimate", "PairQuality", "comparison_patterns", "em", "field_levels", "pairwise_quality",
           "random_pair_u", "to_weights", "weight_table"]  # fmt: skip

FIELDS = ("name", "birth_date", "phone", "email", "card_no", "address")
MISSING = "missing"
Pattern = tuple[str, ...]  # one level per field of FIELDS ("missing" where a side has no value)
_EPS = 1e-6
MAX_WEIGHT = 15.0
DEFAULT_CONFIG = MatchConfig()
HAND_WEIGHTS = MatchWeights()

# Which MatchWeights attributes each (field, level) sets. The three flavours of an exact name share one
# estimate (the data cannot tell them apart often enough); "verified" e-mail is counted as "exact".
WEIGHT_ATTRS: dict[tuple[str, str], tuple[str, ...]] = {
    ("name", "exact"): ("name_exact", "name_exact_kanji_only", "name_exact_kana_only"),
    ("name", "typo"): ("name_typo",), ("name", "partial"): ("name_partial",), ("name", "near"): ("name_near",),
    ("name", "surname_change"): ("name_surname_change",), ("name", "differ"): ("name_differ",),
    ("birth_date", "exact"): ("birth_exact",), ("birth_date", "near"): ("birth_near",),
    ("birth_date", "differ"): ("birth_differ",),
    ("phone", "exact"): ("phone_exact",), ("phone", "differ"): ("phone_differ",),
    ("email", "exact"): ("email_exact",), ("email", "differ"): ("email_differ",),
    ("card_no", "exact"): ("card_exact",), ("card_no", "differ"): ("card_differ",),
    ("address", "exact"): ("address_exact",), ("address", "same_block"): ("address_same_block",),
    ("address", "same_postal"): ("address_same_postal",), ("address", "differ"): ("address_differ",),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Estimate:
    """λ and, per field, level -> probability among matches (m) and non-matches (u)."""

    match_share: float
    m: Mapping[str, Mapping[str, float]]
    u: Mapping[str, Mapping[str, float]]
    iterations: int
    converged: bool

    def weight(self, field: str, level: str) -> float:
        """log2(m/u), bounded: a level never seen among matches is strong evidence, not infinite."""
        ratio = math.log2(max(self.m[field].get(level, 0.0), _EPS) / max(self.u[field].get(level, 0.0), _EPS))
        return min(max(ratio, -MAX_WEIGHT), MAX_WEIGHT)


def _normalise(counts: Mapping[str, float], levels: Iterable[str]) -> dict[str, float]:
    levels = list(levels)
    total = sum(counts.get(level, 0.0) for level in levels)
    if total <= 0:
        return {level: 1.0 / len(levels) for level in levels}
    return {level: max(counts.get(level, 0.0) / total, _EPS) for level in levels}


def _initial_m(levels: Sequence[str]) -> dict[str, float]:
    """Levels are listed most-agreeing first: start m falling geometrically along them."""
    return _normalise({level: 0.5 ** (2 * i) for i, level in enumerate(levels)}, levels)


def em(patterns: Mapping[Pattern, int], levels: Mapping[str, Sequence[str]], *, fields: Sequence[str] = FIELDS,
       fixed_u: Mapping[str, Mapping[str, float]] | None = None, start_m: Mapping[str, Mapping[str, float]] | None = None,
       start_u: Mapping[str, Mapping[str, float]] | None = None,
       start_share: float = 0.1, max_iterations: int = 200, tolerance: float = 1e-7) -> Estimate:
    """Estimate λ, m and u from comparison patterns and their counts.

    `levels[field]` lists the field's levels, most agreeing first (that order only seeds m). With
    `fixed_u` only λ and m are estimated.
    """
    observed = {f: sorted({p[i] for p in patterns if p[i] != MISSING}) for i, f in enumerate(fields)}
    lv = {f: [level for level in levels[f] if level in observed[f]] or list(levels[f]) for f in fields}
    m = {f: _normalise(start_m[f], lv[f]) if start_m and f in start_m else _initial_m(lv[f]) for f in fields}
    if fixed_u is not None or start_u is not None:
        u = {f: _normalise((fixed_u or start_u or {})[f], lv[f]) for f in fields}
    else:  # start u at the overall level shares: most pairs are non-matches
        u = {f: _normalise(Counter({lvl: n for p, n in patterns.items() if (lvl := p[i]) != MISSING}), lv[f])
             for i, f in enumerate(fields)}  # fmt: skip
    share = start_share
    total = sum(patterns.values())
    converged, iteration = False, 0
    while iteration < max_iterations:
        iteration += 1
        m_counts = {f: defaultdict[str, float](float) for f in fields}  # expected counts: fractions of pairs
        u_counts = {f: defaultdict[str, float](float) for f in fields}
        expected_matches = 0.0
        for pattern, count in patterns.items():
            log_m, log_u = math.log(share), math.log(1 - share)
            for i, f in enumerate(fields):
                if pattern[i] != MISSING:
                    log_m += math.log(m[f][pattern[i]])
                    log_u += math.log(u[f][pattern[i]])
            p = 1.0 / (1.0 + math.exp(min(log_u - log_m, 700.0)))
            expected_matches += p * count
            for i, f in enumerate(fields):
                if pattern[i] != MISSING:
                    m_counts[f][pattern[i]] += p * count
                    u_counts[f][pattern[i]] += (1 - p) * count
        new_share = min(max(expected_matches / total, _EPS), 1 - _EPS)
        new_m = {f: _normalise(m_counts[f], lv[f]) for f in fields}
        new_u = u if fixed_u is not None else {f: _normalise(u_counts[f], lv[f]) for f in fields}
        change = abs(new_share - share) + max(abs(new_m[f][lvl] - m[f][lvl]) for f in fields for lvl in lv[f])
        if fixed_u is None:
            change += max(abs(new_u[f][lvl] - u[f][lvl]) for f in fields for lvl in lv[f])
        share, m, u = new_share, new_m, new_u
        if change < tolerance:
            converged = True
            break
    return Estimate(share, m, u, iteration, converged)


def _pattern(comparisons: Sequence[object]) -> Pattern:
    # "verified" (e-mail) and "mobile" (phone) are exact agreements the deterministic rules treat apart.
    level = {c.field: ("exact" if c.level in ("verified", "mobile") else c.level) for c in comparisons}  # type: ignore[attr-defined]
    return tuple(level.get(f, MISSING) for f in FIELDS)


def comparison_patterns(records: Sequence[SourceRecord], config: MatchConfig = DEFAULT_CONFIG) -> Counter[Pattern]:
    """Comparison patterns of the blocked candidate pairs (the pairs resolution looks at)."""
    feats = [features(r, config.ignored_email_domains) for r in records]
    readings = learn_readings(feats)
    feats = [with_learnt_reading(f, readings) for f in feats]
    pairs, _ = candidate_pairs(feats, config)
    return Counter(_pattern(compare(feats[i], feats[j], config.weights)) for i, j in pairs)


def random_pair_u(records: Sequence[SourceRecord], pairs: int = 20000, seed: int = 1,
                  config: MatchConfig = DEFAULT_CONFIG) -> dict[str, dict[str, float]]:  # fmt: skip
    """u per field and level from random pairs, nearly all of them two different people."""
    rng = random.Random(seed)
    n = len(records)
    counts = {f: Counter[str]() for f in FIELDS}
    if n < 2:
        return {f: {} for f in FIELDS}
    feats = [features(r, config.ignored_email_domains) for r in records]
    chosen = combinations(range(n), 2) if n * (n - 1) // 2 <= pairs else (rng.sample(range(n), 2) for _ in range(pairs))
    for i, j in chosen:
        for f, level in zip(FIELDS, _pattern(compare(feats[i], feats[j], config.weights))):
            if level != MISSING:
                counts[f][level] += 1
    # Add-one smoothing: a level never seen among random pairs (a card match) is rare, not impossible.
    return {f: _normalise({lvl: counts[f][lvl] + 1 for lvl in _levels_of(f)}, _levels_of(f)) for f in FIELDS}


def _levels_of(field: str) -> list[str]:
    return [level for (f, level) in WEIGHT_ATTRS if f == field]


def field_levels() -> dict[str, list[str]]:
    """Every field's levels, most agreeing first (the order WEIGHT_ATTRS lists them)."""
    return {f: _levels_of(f) for f in FIELDS}


def to_weights(estimate: Estimate, base: MatchWeights = HAND_WEIGHTS) -> MatchWeights:
    """MatchWeights with log2(m/u) for every level the estimate saw; the others keep `base`'s value."""
    changes: dict[str, float] = {}
    for (f, level), attrs in WEIGHT_ATTRS.items():
        if level in estimate.m.get(f, {}) and level in estimate.u.get(f, {}):
            for attr in attrs:
                changes[attr] = round(estimate.weight(f, level), 2)
    return replace(base, **changes)


def weight_table(hand: MatchWeights, trained: MatchWeights, estimate: Estimate) -> list[dict[str, object]]:
    """One row per (field, level): m, u, the trained weight and the hand-set one."""
    rows: list[dict[str, object]] = []
    for (f, level), attrs in WEIGHT_ATTRS.items():
        rows.append({"field": f, "level": level, "m": estimate.m.get(f, {}).get(level),
                     "u": estimate.u.get(f, {}).get(level), "hand": getattr(hand, attrs[0]),
                     "trained": getattr(trained, attrs[0])})  # fmt: skip
    return rows


@dataclass(frozen=True, slots=True)
class PairQuality:
    precision: float
    recall: float
    true_pairs: int
    found_pairs: int


def pairwise_quality(records: Sequence[SourceRecord], truth: Mapping[RecordKey, str],
                     config: MatchConfig) -> PairQuality:  # fmt: skip
    """Resolve the labelled records with `config` and compare the pairs it joined with the truth's."""
    labelled = [r for r in records if r.key in truth]
    clusters = resolve(labelled, config).clusters
    found = {frozenset(p) for c in clusters for p in combinations(c.keys, 2)}
    by_person: dict[str, list[RecordKey]] = {}
    for r in labelled:
        by_person.setdefault(truth[r.key], []).append(r.key)
    true = {frozenset(p) for keys in by_person.values() for p in combinations(keys, 2)}
    hits = len(found & true)
    return PairQuality(hits / len(found) if found else 1.0, hits / len(true) if true else 1.0, len(true), len(found))
