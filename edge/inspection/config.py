"""The ``[dock]`` section of the store TOML: which reader profiles watch the dock door, and the rules.

    [dock]
    readers = ["readers/m6e-nano.toml"]   # reader profiles, relative to this config file
    quiet_s = 3.0                         # the door is quiet this long: the delivery is complete
    rssi_min_dbm = -70                    # weaker reads are not arrivals
    auto_accept = false                   # post a clean verdict without a clerk

Every wrong field raises one ConfigError naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenpo.edge.config import StoreConfig
from tenpo.edge.inspection.report import ReportSettings
from tenpo.edge.inspection.session import SessionSettings
from tenpo.shared.errors import ConfigError

_KNOWN = {"readers", "quiet_s", "max_session_s", "rearm_s", "rssi_min_dbm", "auto_accept", "location", "reports_dir",
          "read_point", "biz_location", "tz_offset"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DockSettings:
    readers: tuple[Path, ...]  # profile files, absolute
    session: SessionSettings = field(default_factory=SessionSettings)
    auto_accept: bool = False
    location: str = "floor"  # stock ledger location receipts are posted to
    reports: ReportSettings = field(default_factory=lambda: ReportSettings(Path("inspections")))


def dock_settings(config: StoreConfig) -> DockSettings:
    raw = config.section("dock")
    return parse_dock(raw, config.path, config.database)


def parse_dock(raw: dict[str, Any], path: Path, database: Path) -> DockSettings:
    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"config {path}: dock.{key}: {why}")

    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise fail(unknown[0], "unknown setting")
    readers_raw = raw.get("readers", [])
    if not isinstance(readers_raw, list) or not all(isinstance(r, str) and r.strip() for r in readers_raw):
        raise fail("readers", "must be a list of reader profile paths")
    readers = tuple(p if (p := Path(r)).is_absolute() else (path.parent / p).resolve() for r in readers_raw)

    def number(key: str, default: float, allow_zero: bool = False) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
            raise fail(key, f"must be a positive number of seconds, got {value!r}")
        return float(value)

    defaults = SessionSettings()
    rssi = raw.get("rssi_min_dbm", defaults.rssi_min_dbm)
    if rssi is not None and (isinstance(rssi, bool) or not isinstance(rssi, int) or not -128 <= rssi <= 20):
        raise fail("rssi_min_dbm", f"must be a whole number of dBm (-128 .. 20), got {rssi!r}")
    session = SessionSettings(
        quiet_s=number("quiet_s", defaults.quiet_s),
        max_session_s=number("max_session_s", defaults.max_session_s),
        rearm_s=number("rearm_s", defaults.rearm_s, allow_zero=True),
        rssi_min_dbm=rssi,
    )
    auto_accept = raw.get("auto_accept", False)
    if not isinstance(auto_accept, bool):
        raise fail("auto_accept", f"must be true or false, got {auto_accept!r}")

    def text(key: str, default: str | None) -> str | None:
        value = raw.get(key, default)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise fail(key, f"must be a non-empty string, got {value!r}")
        return value

    tz_offset = text("tz_offset", "+09:00")
    assert tz_offset is not None
    if len(tz_offset) != 6 or tz_offset[0] not in "+-" or tz_offset[3] != ":" or not (tz_offset[1:3] + tz_offset[4:]).isdigit():
        raise fail("tz_offset", f"must look like +09:00, got {tz_offset!r}")
    reports_dir = Path(text("reports_dir", "inspections") or "inspections")
    if not reports_dir.is_absolute():
        reports_dir = database.parent / reports_dir
    return DockSettings(
        readers=readers,
        session=session,
        auto_accept=auto_accept,
        location=text("location", "floor") or "floor",
        reports=ReportSettings(reports_dir, text("read_point", None), text("biz_location", None), tz_offset),
    )
