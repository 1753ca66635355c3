"""The monitor's settings: attention thresholds and refresh timing, from an optional TOML file.

```toml
[thresholds]
offline_after_s = 60      # offline longer than this: alert
backlog_above = 1000      # events waiting at the store
skew_above_ms = 5000      # |store HLC - HQ clock|
[refresh]
interval_s = 1.0
throughput_window_s = 600 # sparkline span
bucket_s = 10             # one sparkline bar
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from tenpo.shared.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Thresholds:
    offline_after_s: float = 60.0
    backlog_above: int = 1000
    skew_above_ms: int = 5000


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    thresholds: Thresholds = Thresholds()
    interval_s: float = 1.0
    throughput_window_s: float = 600.0
    bucket_s: float = 10.0

    @property
    def buckets(self) -> int:
        return max(1, int(self.throughput_window_s // self.bucket_s))


def _numbers(section: Any, target: Any, where: str) -> dict[str, Any]:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: must be a table")
    known = {f.name: f.type for f in fields(target)}
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown setting (known: {', '.join(sorted(known))})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where}.{key}: must be a number >= 0")
        values[key] = int(value) if known[key] in ("int", int) else float(value)
    return values


def parse_monitor_config(data: dict[str, Any], where: str = "monitor config") -> MonitorConfig:
    config = MonitorConfig()
    if "thresholds" in data:
        config = replace(config, thresholds=Thresholds(**_numbers(data["thresholds"], Thresholds, f"{where}: thresholds")))
    if "refresh" in data:
        refresh = _numbers(data["refresh"], _RefreshFields, f"{where}: refresh")
        config = replace(config, **refresh)
    if config.interval_s <= 0 or config.bucket_s <= 0:
        raise ConfigError(f"{where}: refresh.interval_s and refresh.bucket_s must be above 0")
    unknown = set(data) - {"thresholds", "refresh"}
    if unknown:
        raise ConfigError(f"{where}: unknown table(s) {', '.join(sorted(unknown))}")
    return config


@dataclass(frozen=True, slots=True)
class _RefreshFields:
    interval_s: float = 1.0
    throughput_window_s: float = 600.0
    bucket_s: float = 10.0


def load_monitor_config(path: Path | None) -> MonitorConfig:
    if path is None:
        return MonitorConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML ({exc})") from None
    return parse_monitor_config(data, str(path))
