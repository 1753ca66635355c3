"""What a chain configures for its members at HQ: matching thresholds and each channel's points rules.

Read from a small TOML file (`--rules FILE`); every key is optional and the defaults are the ones of
tenpo.cloud.identity. See docs/members.md §4 for the format.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tenpo.cloud.identity import MatchConfig, SurvivorshipRules
from tenpo.shared.cleansing import CleansingRules
from tenpo.shared.errors import UserError

PAID_STATUSES = frozenset({"paid", "partially_refunded"})


@dataclass(frozen=True, slots=True)
class ChannelRule:
    """How one channel's orders earn points: `points_per_100_yen` on the paid total of an order whose
    status is in `earn_on` (Shopify's Financial Status; the generic format says "paid")."""

    points_per_100_yen: int = 0
    earn_on: frozenset[str] = PAID_STATUSES

    def points(self, total_yen: int, status: str | None) -> int:
        if status not in self.earn_on or total_yen <= 0:
            return 0
        return (total_yen // 100) * self.points_per_100_yen


_DEFAULT_CHANNELS = {
    "web": ChannelRule(1),
    "store": ChannelRule(1),
    "line": ChannelRule(1),
    "marketplace": ChannelRule(0),  # the marketplace runs its own points programme
}


@dataclass(frozen=True, slots=True)
class MembersConfig:
    match: MatchConfig = field(default_factory=MatchConfig)
    survivorship: SurvivorshipRules = field(default_factory=SurvivorshipRules)
    # Imports accept records without a name (a web order may carry only an e-mail); the store form requires one.
    cleansing: CleansingRules = field(default_factory=lambda: CleansingRules(required=frozenset()))
    channels: Mapping[str, ChannelRule] = field(default_factory=lambda: MappingProxyType(dict(_DEFAULT_CHANNELS)))
    unknown_channel: ChannelRule = ChannelRule(0)
    weights: str = "hand"  # [identity] weights: "hand" (MatchWeights defaults) or "trained" (members train)

    def channel(self, name: str) -> ChannelRule:
        return self.channels.get(name, self.unknown_channel)


def parse_rules(data: Mapping[str, Any]) -> MembersConfig:
    """Build the config from parsed TOML; raises UserError naming the bad key."""
    config = MembersConfig()
    matching = data.get("matching", {})
    if not isinstance(matching, Mapping):
        raise UserError("rules: [matching] must be a table")
    match_changes: dict[str, Any] = {}
    for key in ("match_threshold", "review_threshold"):
        if key in matching:
            match_changes[key] = _number(matching[key], f"matching.{key}")
    for key in ("max_block_size", "max_name_block_size"):
        if key in matching:
            match_changes[key] = int(_number(matching[key], f"matching.{key}"))
    if "ignored_email_domains" in matching:
        match_changes["ignored_email_domains"] = frozenset(_strings(matching["ignored_email_domains"],
                                                                    "matching.ignored_email_domains"))
    if "deterministic_fields" in matching:
        match_changes["deterministic_fields"] = frozenset(_strings(matching["deterministic_fields"],
                                                                   "matching.deterministic_fields"))
    channels = dict(config.channels)
    raw_channels = data.get("channels", {})
    if not isinstance(raw_channels, Mapping):
        raise UserError("rules: [channels] must be a table of tables")
    for name, raw in raw_channels.items():
        if not isinstance(raw, Mapping):
            raise UserError(f"rules: channels.{name} must be a table")
        base = channels.get(name, ChannelRule())
        rate = raw.get("points_per_100_yen", base.points_per_100_yen)
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
            raise UserError(f"rules: channels.{name}.points_per_100_yen must be a whole number >= 0")
        earn_on = frozenset(_strings(raw["earn_on"], f"channels.{name}.earn_on")) if "earn_on" in raw else base.earn_on
        channels[name] = ChannelRule(rate, earn_on)
    unknown = channels.pop("default", config.unknown_channel)
    identity = data.get("identity", {})
    if not isinstance(identity, Mapping) or identity.get("weights", "hand") not in ("hand", "trained"):
        raise UserError('rules: [identity] weights must be "hand" or "trained"')
    return replace(config, match=replace(config.match, **match_changes),
                   channels=MappingProxyType(channels), unknown_channel=unknown, weights=identity.get("weights", "hand"))


def load_rules(path: Path | None) -> MembersConfig:
    if path is None:
        return MembersConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"--rules {path}: cannot read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"--rules {path}: not valid TOML ({exc})") from None
    return parse_rules(data)


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"rules: {key} must be a number")
    return float(value)


def _strings(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"rules: {key} must be a list of strings")
    return value
