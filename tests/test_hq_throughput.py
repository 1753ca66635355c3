"""The monitor's sparkline series, built incrementally as the window moves, equals one built from scratch."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from tenpo.cloud import status
from tenpo.cloud.hq.data import Throughput


def _from_scratch(throughput: Throughput, now: float) -> tuple[dict[str, tuple[int, ...]], tuple[float, ...]]:
    first = math.floor(now / throughput.bucket_s) - throughput.buckets
    per_store: dict[str, list[int]] = {}
    total = [0] * throughput.buckets
    for index in range(throughput.buckets):
        for store_id, count in throughput.by_bucket.get(first + index, {}).items():
            per_store.setdefault(store_id, [0] * throughput.buckets)[index] = count
            total[index] += count
    return {k: tuple(v) for k, v in per_store.items()}, tuple(c / throughput.bucket_s for c in total)


def test_the_series_follows_late_applies_and_jumps_of_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    applied: dict[tuple[str, int], int] = {}  # (store, bucket) -> events, as the events table would count them

    def applied_buckets(db: Any, since: float, until: float, bucket_s: float) -> dict[tuple[str, int], int]:
        return {(s, n): c for (s, n), c in applied.items() if since <= n * bucket_s < until}

    monkeypatch.setattr(status, "applied_buckets", applied_buckets)
    rng = random.Random(7)
    for _ in range(200):
        throughput = Throughput(10.0, 6)
        now = 1000.0 + rng.random() * 10
        for _ in range(30):
            now += rng.choice([0.5, 1.0, 3.0, 10.0, 25.0, 70.0])  # refreshes, a pause, a long sleep
            current = math.floor(now / 10)
            for _ in range(rng.randrange(4)):  # some applies land in the bucket before (committed late)
                applied[(f"S{rng.randrange(5)}", current - rng.randrange(3))] = rng.randrange(1, 9)
            throughput.refresh(None, now)  # type: ignore[arg-type]
            if rng.random() < 0.7:
                assert throughput.series(now) == _from_scratch(throughput, now)
