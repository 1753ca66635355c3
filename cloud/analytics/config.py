"""What a chain configures for its analytics at HQ: RFM cut points, named segments, the F2 window,
basket and recommendation thresholds, and which consent keys allow which campaign channel.

Read from a small TOML file (`--config FILE` or ``$TENPO_ANALYTICS_CONFIG``); every key is optional.
docs/analytics.md §3 shows the format. Pure: ``parse_config`` takes parsed TOML.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenpo.shared.errors import UserError

CHANNELS = ("email", "line", "dm")
PURCHASE_STATUSES = frozenset({"paid", "partially_refunded", "refunded"})


@dataclass(frozen=True, slots=True)
class Segment:
    """A named segment: every condition given must hold (inclusive [low, high] ranges); none = catch-all."""

    name: str
    r: tuple[int, int] | None = None
    f: tuple[int, int] | None = None
    m: tuple[int, int] | None = None
    frequency: tuple[int, int] | None = None
    recency_days: tuple[int, int] | None = None

    def matches(self, r: int, f: int, m: int, frequency: int, recency_days: int) -> bool:
        checks = ((self.r, r), (self.f, f), (self.m, m), (self.frequency, frequency), (self.recency_days, recency_days))
        return all(bounds is None or bounds[0] <= value <= bounds[1] for bounds, value in checks)


DEFAULT_SEGMENTS = (
    Segment("優良", r=(4, 5), f=(4, 5), m=(4, 5)),  # best: recent, frequent, big spenders
    Segment("新規", r=(4, 5), frequency=(1, 1)),  # new: one recent purchase
    Segment("休眠", r=(1, 1)),  # dormant: the longest gone
    Segment("離反予備軍", r=(2, 3), f=(3, 5)),  # at risk: used to come often, drifting away
    Segment("育成", ),  # everyone else: to grow
)  # fmt: skip

DEFAULT_CONSENT: Mapping[str, tuple[str, ...]] = {
    "email": ("marketing_email", "marketing:email", "marketing:web", "email"),
    "line": ("marketing_line", "marketing:line", "line"),
    "dm": ("marketing_dm", "marketing:dm", "dm"),
}


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    # Cut points (4 ascending values) per measure; None = quintiles of the members analysed.
    recency_cuts: tuple[int, ...] | None = None
    frequency_cuts: tuple[int, ...] | None = None
    monetary_cuts: tuple[int, ...] | None = None
    segments: tuple[Segment, ...] = DEFAULT_SEGMENTS
    f2_days: int = 90  # a second purchase within this many days of the first converts (F2 転換)
    purchase_statuses: frozenset[str] = PURCHASE_STATUSES  # imported orders that count as purchases
    min_support: float = 0.01
    min_confidence: float = 0.0
    recommend_count: int = 5
    recommend_exclude_days: int = 30  # what the member bought this recently is not offered again
    recommend_half_life_days: int = 90  # an older purchase weighs half as much after this many days
    recommend_min_pairs: int = 2  # a co-purchase seen fewer times is noise, not a rule
    recommend_batch: int = 1000  # members whose recommendations each scheduled run refreshes (oldest first)
    consent: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_CONSENT))


def parse_config(data: Mapping[str, Any]) -> AnalyticsConfig:
    """The config from parsed TOML; UserError naming the bad key."""
    rfm = _table(data, "rfm")
    cuts = {key: _cuts(rfm[key], f"rfm.{key}") if key in rfm else None for key in ("recency_days", "frequency", "monetary")}
    segments: tuple[Segment, ...] = DEFAULT_SEGMENTS
    if "segments" in data:
        raw = data["segments"]
        if not isinstance(raw, list) or not raw or not all(isinstance(s, Mapping) for s in raw):
            raise UserError("analytics config: [[segments]] must be a non-empty array of tables")
        segments = tuple(_segment(s, n) for n, s in enumerate(raw, 1))
    retention, basket, rec = _table(data, "retention"), _table(data, "basket"), _table(data, "recommend")
    consent = dict(DEFAULT_CONSENT)
    for channel, keys in _table(data, "consent").items():
        if channel not in CHANNELS:
            raise UserError(f"analytics config: consent.{channel}: channels are {', '.join(CHANNELS)}")
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise UserError(f"analytics config: consent.{channel} must be a list of consent keys")
        consent[channel] = tuple(keys)
    statuses = retention.get("order_statuses", sorted(PURCHASE_STATUSES))
    if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
        raise UserError("analytics config: retention.order_statuses must be a list of strings")
    return AnalyticsConfig(
        recency_cuts=cuts["recency_days"], frequency_cuts=cuts["frequency"], monetary_cuts=cuts["monetary"],
        segments=segments, f2_days=_int(retention, "f2_days", 90, "retention"), purchase_statuses=frozenset(statuses),
        min_support=_fraction(basket, "min_support", 0.01), min_confidence=_fraction(basket, "min_confidence", 0.0),
        recommend_count=_int(rec, "count", 5, "recommend"), recommend_exclude_days=_int(rec, "exclude_days", 30, "recommend"),
        recommend_half_life_days=max(1, _int(rec, "half_life_days", 90, "recommend")),
        recommend_min_pairs=_int(rec, "min_pairs", 2, "recommend"), recommend_batch=_int(rec, "batch", 1000, "recommend"),
        consent=consent,
    )  # fmt: skip


def load_config(path: Path | None = None) -> AnalyticsConfig:
    """``path``, else ``$TENPO_ANALYTICS_CONFIG``, else the defaults."""
    if path is None:
        env = os.environ.get("TENPO_ANALYTICS_CONFIG")
        if not env:
            return AnalyticsConfig()
        path = Path(env)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"analytics config {path}: cannot read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"analytics config {path}: not valid TOML ({exc})") from None
    return parse_config(data)


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise UserError(f"analytics config: [{key}] must be a table")
    return value


def _int(table: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"analytics config: {where}.{key} must be a whole number >= 0")
    return value


def _fraction(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UserError(f"analytics config: basket.{key} must be a number from 0 to 1")
    return float(value)


def _cuts(value: Any, key: str) -> tuple[int, ...]:
    if (not isinstance(value, list) or len(value) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or sorted(value) != value):  # fmt: skip
        raise UserError(f"analytics config: {key} must be 4 ascending whole numbers (the cut points of scores 1-5)")
    return tuple(value)


def _segment(raw: Mapping[str, Any], n: int) -> Segment:
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        raise UserError(f"analytics config: segments[{n}].name must be a non-empty string (at most 64 characters)")
    unknown = set(raw) - {"name", "r", "f", "m", "frequency", "recency_days"}
    if unknown:
        raise UserError(f"analytics config: segments[{n}]: unknown key {sorted(unknown)[0]!r}")
    bounds: dict[str, tuple[int, int]] = {}
    for key in ("r", "f", "m", "frequency", "recency_days"):
        if key in raw:
            value = raw[key]
            whole = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            if not whole or len(value) != 2 or value[0] > value[1]:
                raise UserError(f"analytics config: segments[{n}].{key} must be [low, high] whole numbers")
            bounds[key] = (value[0], value[1])
    return Segment(name.strip(), **bounds)
