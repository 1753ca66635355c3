"""The beacon registry (``firmware-config/beacons.toml``): which beacons are ours, and how to judge presence.

Parsing is pure: ``parse_registry(text)`` returns frozen values or raises ``ConfigError`` naming
the file and the exact field (``zone_beacons[2].major: expected an integer 0..65535, got "x"``).
Unknown keys are errors too, because a misspelt threshold silently falling back to a default is
the kind of mistake nobody notices until the store complains.
"""

from __future__ import annotations

import tomllib
import uuid as uuidlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from tenpo.shared.beacon_id import WINDOW_S
from tenpo.shared.errors import ConfigError

# A zone beacon's identity: ("id", uuid, major, minor) for iBeacon/AltBeacon,
# ("eddystone", namespace_hex, instance_hex) for Eddystone-UID.
BeaconKey = tuple[str, str | None, int, int] | tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class MemberApp:
    ibeacon_uuid: str | None  # the UUID the member app advertises its rotating id under
    accept_eid: bool  # resolve Eddystone-EID-shaped frames (Android carrier) too
    window_s: int
    drift_windows: int


@dataclass(frozen=True, slots=True)
class Thresholds:
    enter_rssi: float  # smoothed RSSI at or above this: present
    leave_rssi: float  # smoothed RSSI below this for leave_after_s: gone
    leave_after_s: float
    silence_timeout_s: float  # nothing heard for this long: gone
    smoothing_s: float  # time constant of the exponential RSSI filter


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    thresholds: Thresholds


@dataclass(frozen=True, slots=True)
class ZoneBeacon:
    name: str
    zone: str
    key: BeaconKey


@dataclass(frozen=True, slots=True)
class FirstVisitRule:
    """Coupon when a member arrives and their previous visit was ``days`` or more ago (or never)."""

    name: str
    days: float


@dataclass(frozen=True, slots=True)
class ZoneDwellRule:
    """Coupon when a member has been in ``zone`` for ``seconds`` in one stay."""

    name: str
    zone: str
    seconds: float


CouponRule = FirstVisitRule | ZoneDwellRule


@dataclass(frozen=True, slots=True)
class Registry:
    member_app: MemberApp
    presence: Thresholds  # store-level arrive/leave
    scanner_zone: str | None  # zone this box's own receiver stands in, if any
    retention_days: int  # how long resolved visits may be kept (the agent enforces it)
    zones: tuple[Zone, ...]
    zone_beacons: tuple[ZoneBeacon, ...]
    coupon_rules: tuple[CouponRule, ...]

    def zone(self, name: str) -> Zone | None:
        return next((zone for zone in self.zones if zone.name == name), None)

    def beacon_index(self) -> dict[BeaconKey, ZoneBeacon]:
        return {beacon.key: beacon for beacon in self.zone_beacons}


DEFAULT_THRESHOLDS = Thresholds(
    enter_rssi=-75.0, leave_rssi=-85.0, leave_after_s=15.0, silence_timeout_s=60.0, smoothing_s=4.0
)


class _Table:
    """A TOML table being read, remembering its path for error messages and which keys were used."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        self.path, self.source = path, source
        if not isinstance(data, dict):
            self.fail("", f"expected a table, got {_show(data)}")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def fail(self, key: str, message: str) -> NoReturn:
        where = ".".join(part for part in (self.path, key) if part)
        raise ConfigError(f"{self.source}: {where or 'top level'}: {message}")

    def get(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.get(key)
        if value is None:
            if required:
                self.fail(key, "is required")
            return default
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"expected a non-empty string, got {_show(value)}")
        if len(value.strip()) > MAX_TEXT_CHARS:  # issue 14: names go into events (Label, 128 characters)
            self.fail(key, f"{len(value.strip())} characters, at most {MAX_TEXT_CHARS}")
        return value.strip()

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            self.fail(key, f"expected a number {low:g}..{high:g}, got {_show(value)}")
        return float(value)

    def integer(self, key: str, default: int | None, low: int, high: int) -> int:
        value = self.get(key)
        if value is None and default is not None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(key, f"expected an integer {low}..{high}, got {_show(value)}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_show(value)}")
        return value

    def tables(self, key: str) -> list[_Table]:
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, f"expected an array of tables ([[{key}]]), got {_show(value)}")
        return [_Table(item, f"{self.join(key)}[{i}]", self.source) for i, item in enumerate(value)]

    def table(self, key: str) -> _Table:
        return _Table(self.get(key) or {}, self.join(key), self.source)

    def join(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def done(self) -> None:
        for key in self.data:
            if key not in self.used:
                self.fail(key, "unknown field")


MAX_TEXT_CHARS = 128  # zone, beacon and rule names travel in events as a Label


def _show(value: Any) -> str:
    text = f'"{value}"' if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."  # an error message never carries a huge value


def _uuid(table: _Table, key: str, *, required: bool) -> str | None:
    text = table.text(key, required=required)
    if text is None:
        return None
    try:
        return str(uuidlib.UUID(text))
    except ValueError:
        table.fail(key, f"expected a UUID like 01234567-89ab-cdef-0123-456789abcdef, got {_show(text)}")
    return None  # unreachable


def _hex(table: _Table, key: str, size: int) -> str:
    text = table.text(key, required=True) or ""
    cleaned = text.lower().removeprefix("0x")
    if len(cleaned) != 2 * size or any(c not in "0123456789abcdef" for c in cleaned):
        table.fail(key, f"expected {size} bytes as {2 * size} hex digits, got {_show(text)}")
    return cleaned


def _thresholds(table: _Table, base: Thresholds) -> Thresholds:
    values = replace(
        base,
        enter_rssi=table.number("enter_rssi", base.enter_rssi, -127, 20),
        leave_rssi=table.number("leave_rssi", base.leave_rssi, -127, 20),
        leave_after_s=table.number("leave_after_s", base.leave_after_s, 0, 3600),
        silence_timeout_s=table.number("silence_timeout_s", base.silence_timeout_s, 1, 3600),
        smoothing_s=table.number("smoothing_s", base.smoothing_s, 0, 600),
    )
    if values.leave_rssi >= values.enter_rssi:
        table.fail("leave_rssi", f"must be below enter_rssi ({values.enter_rssi:g}) for hysteresis")
    return values


def _zone_beacon(table: _Table, zones: set[str]) -> ZoneBeacon:
    name = table.text("name", required=True) or ""
    zone = table.text("zone", required=True) or ""
    if zone not in zones:
        table.fail("zone", f'"{zone}" is not declared in [[zones]]')
    if table.data.get("uuid") is not None:
        key: BeaconKey = (
            "id",
            _uuid(table, "uuid", required=True),
            table.integer("major", None, 0, 0xFFFF),
            table.integer("minor", None, 0, 0xFFFF),
        )
    elif table.data.get("namespace") is not None:
        key = ("eddystone", _hex(table, "namespace", 10), _hex(table, "instance", 6))
    else:
        table.fail("", "needs uuid/major/minor (iBeacon, AltBeacon) or namespace/instance (Eddystone)")
    table.done()
    return ZoneBeacon(name, zone, key)


def _coupon_rule(table: _Table, zones: set[str]) -> CouponRule:
    name = table.text("name", required=True) or ""
    kind = table.text("kind", required=True)
    rule: CouponRule
    if kind == "first_visit":
        rule = FirstVisitRule(name, table.number("days", 30, 0, 3650))
    elif kind == "zone_dwell":
        zone = table.text("zone", required=True) or ""
        if zone not in zones:
            table.fail("zone", f'"{zone}" is not declared in [[zones]]')
        rule = ZoneDwellRule(name, zone, table.number("seconds", 300, 1, 86400))
    else:
        table.fail("kind", f'expected "first_visit" or "zone_dwell", got {_show(kind)}')
    table.done()
    return rule


def _unique(tables: list[_Table], names: list[str], what: str) -> None:
    seen: set[str] = set()
    for table, name in zip(tables, names):
        if name in seen:
            table.fail("name", f'duplicate {what} name "{name}"')
        seen.add(name)


def parse_registry(text: str, source: str = "beacons.toml") -> Registry:
    """Parse registry TOML text. Raises ConfigError with the file and field on any problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    root = _Table(data, "", source)

    app = root.table("member_app")
    member_app = MemberApp(
        ibeacon_uuid=_uuid(app, "ibeacon_uuid", required=False),
        accept_eid=app.flag("accept_eid", True),
        window_s=app.integer("window_s", WINDOW_S, 60, 86400),
        drift_windows=app.integer("drift_windows", 1, 0, 3),
    )
    app.done()

    presence_table = root.table("presence")
    presence = _thresholds(presence_table, DEFAULT_THRESHOLDS)
    scanner_zone = presence_table.text("scanner_zone")
    retention_days = presence_table.integer("retention_days", 90, 1, 3650)
    presence_table.done()

    zone_tables = root.tables("zones")
    zones = []
    for table in zone_tables:
        zones.append(Zone(table.text("name", required=True) or "", _thresholds(table, presence)))
        table.done()
    _unique(zone_tables, [zone.name for zone in zones], "zone")
    zone_names = {zone.name for zone in zones}
    if scanner_zone is not None and scanner_zone not in zone_names:
        presence_table.fail("scanner_zone", f'"{scanner_zone}" is not declared in [[zones]]')

    beacon_tables = root.tables("zone_beacons")
    beacons = [_zone_beacon(table, zone_names) for table in beacon_tables]
    _unique(beacon_tables, [beacon.name for beacon in beacons], "zone beacon")
    rule_tables = root.tables("coupon_rules")
    rules = [_coupon_rule(table, zone_names) for table in rule_tables]
    _unique(rule_tables, [rule.name for rule in rules], "coupon rule")
    root.done()
    return Registry(
        member_app, presence, scanner_zone, retention_days,
        tuple(zones), tuple(beacons), tuple(rules),
    )  # fmt: skip


def load_registry(path: str | Path) -> Registry:
    """Read and parse a registry file; a missing or unreadable file is a ConfigError too."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read beacon registry: {exc.strerror or exc}") from None
    return parse_registry(text, source=str(path))
