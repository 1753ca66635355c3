"""How far the store's clock is from HQ's, estimated from the ``at`` HQ stamps on every ack.

Pure: the sync machine feeds it (HQ's ``at``, our wall clock at receipt, a monotonic ``now``); the
adapter writes what it returns into the replica's meta under :data:`CLOCK_SKEW_META`, where
`tenpo edge status` and `tenpo doctor` read it back with :func:`parse_recorded`.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from typing import Final

CLOCK_SKEW_META: Final = "clock_skew"
SAMPLES: Final = 8  # acks the estimate is taken over
RECORD_STEP_S: Final = 0.1  # a new estimate is written when it moved this much...
RECORD_EVERY_S: Final = 60.0  # ...or when the one written is this old (its stamp then says it is current)


@dataclass(frozen=True, slots=True)
class RecordedSkew:
    skew_s: float  # positive: HQ's clock is ahead of ours
    at: float  # our wall clock when it was recorded
    samples: int


class SkewEstimate:
    """``at − received`` is low by the ack's one-way delay (broker hop, queueing) and never high, so the
    largest of the recent estimates is the one least spoilt by delay."""

    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=SAMPLES)
        self.recorded: float | None = None
        self.last_record = float("-inf")

    def observe(self, hq_at: float | None, received_at: float | None, now: float) -> float | None:
        """Take one ack in; the estimate when it should be written now, else None."""
        if hq_at is None or received_at is None or not math.isfinite(hq_at - received_at):
            return None  # an older aggregator, or a value no clock has
        self.samples.append(hq_at - received_at)
        skew = max(self.samples)
        moved = self.recorded is None or abs(skew - self.recorded) >= RECORD_STEP_S
        if not moved and now - self.last_record < RECORD_EVERY_S:
            return None
        self.recorded, self.last_record = skew, now
        return skew


def to_meta(skew_s: float, samples: int, at: float) -> str:
    return json.dumps({"skew_s": round(skew_s, 3), "at": at, "samples": samples})


def parse_recorded(raw: str | None) -> RecordedSkew | None:
    """The recorded estimate, or None when no ack with a time arrived yet (or the value is unreadable)."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
        return RecordedSkew(float(value["skew_s"]), float(value["at"]), int(value.get("samples", 1)))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
