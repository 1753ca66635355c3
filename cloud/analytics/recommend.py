"""Next-best items for one member. Pure.

Every SKU the member bought votes for the SKUs bought with it: the vote is the rule's confidence
(A→B, chain-wide, pairs seen at least ``min_pairs`` times) weighed by how recent the purchase was
(half the weight every ``half_life_days``). SKUs bought in the last ``exclude_days`` are never offered.
A member without history, or with too few votes, gets the store's best sellers (cold start).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Recommendation:
    sku: str
    score: float
    reason: str  # "bought-with:<sku>" or "best-seller"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def recommend(history: Iterable[tuple[dt.date, Iterable[str]]], as_of: dt.date, *,
              pair_counts: Mapping[tuple[str, str], int], item_counts: Mapping[str, int],
              best_sellers: Sequence[str], count: int, exclude_days: int, half_life_days: int,
              min_pairs: int) -> list[Recommendation]:  # fmt: skip
    """``history``: (JST day, SKUs) of the member's purchases; ``pair_counts`` keyed (a, b) with a < b."""
    weights: dict[str, float] = {}
    recent: set[str] = set()
    for day, skus in history:
        age = max(0, (as_of - day).days)
        weight = 0.5 ** (age / half_life_days)
        for sku in skus:
            weights[sku] = max(weights.get(sku, 0.0), weight)
            if age <= exclude_days:
                recent.add(sku)
    by_sku: dict[str, list[tuple[str, int]]] = {}
    for (a, b), n in pair_counts.items():
        if n >= min_pairs:
            by_sku.setdefault(a, []).append((b, n))
            by_sku.setdefault(b, []).append((a, n))
    scores: dict[str, float] = {}
    because: dict[str, tuple[float, str]] = {}
    for sku, weight in weights.items():
        base = item_counts.get(sku, 0)
        if base <= 0:
            continue
        for other, n in by_sku.get(sku, ()):
            if other in recent:
                continue
            vote = weight * n / base
            scores[other] = scores.get(other, 0.0) + vote
            if vote > because.get(other, (0.0, ""))[0]:
                because[other] = (vote, sku)
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:count]
    picks = [Recommendation(sku, round(score, 6), f"bought-with:{because[sku][1]}") for sku, score in ranked]
    chosen = {p.sku for p in picks}
    for sku in best_sellers:
        if len(picks) >= count:
            break
        if sku not in chosen and sku not in recent:
            picks.append(Recommendation(sku, 0.0, "best-seller"))
            chosen.add(sku)
    return picks
