"""Basket rules between single SKUs, from counts per purchase. Pure.

Counted per purchase (its set of SKUs): support(A∪B) = purchases with both / all purchases;
confidence(A→B) = support(A∪B) / support(A); lift(A→B) = confidence(A→B) / support(B). Both
directions of every pair whose support reaches the minimum are listed. Counts are what the
incremental tables keep: ``n`` purchases, per SKU, per unordered pair (a < b).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any


@dataclass(slots=True)
class BasketCounts:
    purchases: int = 0
    items: Counter[str] = field(default_factory=Counter)
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, basket: Iterable[str], sign: int = 1) -> None:
        """Count one purchase in (sign 1) or out (sign -1)."""
        skus = sorted(set(basket))
        if not skus:
            return
        self.purchases += sign
        for sku in skus:
            self.items[sku] += sign
        for pair in combinations(skus, 2):
            self.pairs[pair] += sign


def pairs_of(basket: Iterable[str]) -> list[tuple[str, str]]:
    return list(combinations(sorted(set(basket)), 2))


@dataclass(frozen=True, slots=True)
class Rule:
    antecedent: tuple[str, ...]
    consequent: str
    count: int
    support: float
    confidence: float
    lift: float

    def as_json(self) -> dict[str, Any]:
        return {"antecedent": list(self.antecedent), "consequent": self.consequent, "count": self.count,
                "support": self.support, "confidence": self.confidence, "lift": self.lift}  # fmt: skip


def rules(purchases: int, items: Mapping[str, int], pairs: Mapping[tuple[str, str], int], min_support: float,
          min_confidence: float = 0.0) -> list[Rule]:
    """Rules A→B and B→A of every pair with support >= ``min_support``; by lift, confidence, then SKU."""
    if purchases <= 0:
        return []
    found = []
    for (a, b), both in pairs.items():
        if both <= 0:
            continue
        support = both / purchases
        if support < min_support:
            continue
        for x, y in ((a, b), (b, a)):
            confidence = both / items[x]
            if confidence < min_confidence:
                continue
            lift = confidence / (items[y] / purchases)
            found.append(Rule((x,), y, both, support, confidence, lift))
    found.sort(key=lambda r: (-r.lift, -r.confidence, r.antecedent, r.consequent))
    return found


def best_sellers(items: Mapping[str, int], limit: int) -> list[str]:
    """SKUs bought in the most purchases, then by SKU."""
    return [sku for sku, n in sorted(items.items(), key=lambda kv: (-kv[1], kv[0])) if n > 0][:limit]
