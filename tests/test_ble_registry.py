"""The beacon registry: the shipped example loads, and mistakes are named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenpo.edge.ble.registry import FirstVisitRule, ZoneDwellRule, load_registry, parse_registry
from tenpo.shared.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "firmware-config" / "beacons.toml"


def test_example_registry_loads() -> None:
    registry = load_registry(EXAMPLE)
    assert registry.member_app.ibeacon_uuid == "7e4b1c2a-9d3f-4a61-b8e5-0c2f6d9a4e17"
    assert registry.member_app.window_s == 600
    assert registry.presence.enter_rssi > registry.presence.leave_rssi
    fitting = registry.zone("fitting-room")
    assert fitting is not None and fitting.thresholds.enter_rssi == -68
    assert fitting.thresholds.silence_timeout_s == registry.presence.silence_timeout_s  # inherited
    index = registry.beacon_index()
    assert index[("id", "5a1e0c3b-77d2-4f0e-9b1a-3c8d2e6f4b90", 1, 1)].zone == "entrance"
    assert index[("eddystone", "a1b2c3d4e5f60718293a", "000000000001")].name == "fitting-1"
    assert registry.coupon_rules == (
        FirstVisitRule("welcome-back-30d", 30.0),
        ZoneDwellRule("fitting-room-5min", "fitting-room", 300.0),
    )


def test_empty_registry_uses_defaults() -> None:
    registry = parse_registry("")
    assert registry.member_app.ibeacon_uuid is None and registry.zone_beacons == ()


def test_uuid_is_normalised_to_lower_case() -> None:
    registry = parse_registry('[member_app]\nibeacon_uuid = "7E4B1C2A9D3F4A61B8E50C2F6D9A4E17"\n')
    assert registry.member_app.ibeacon_uuid == "7e4b1c2a-9d3f-4a61-b8e5-0c2f6d9a4e17"


ZONE = '[[zones]]\nname = "entrance"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[presence]\nenter_rssi = -90\nleave_rssi = -80\n", "presence.leave_rssi: must be below enter_rssi"),
        ("[presence]\nenter_rsi = -70\n", "presence.enter_rsi: unknown field"),
        ('[presence]\nenter_rssi = "loud"\n', 'presence.enter_rssi: expected a number -127..20, got "loud"'),
        ('[member_app]\nibeacon_uuid = "not-a-uuid"\n', "member_app.ibeacon_uuid: expected a UUID"),
        (
            ZONE + '[[zone_beacons]]\nname = "e1"\nzone = "entrance"\nuuid = "5a1e0c3b-77d2-4f0e-9b1a-3c8d2e6f4b90"\n'
            'major = 70000\nminor = 1\n',
            "zone_beacons[0].major: expected an integer 0..65535, got 70000",
        ),
        (
            ZONE + '[[zone_beacons]]\nname = "e1"\nzone = "lobby"\n'
            'namespace = "a1b2c3d4e5f60718293a"\ninstance = "01"\n',
            'zone_beacons[0].zone: "lobby" is not declared in [[zones]]',
        ),
        (
            ZONE + '[[zone_beacons]]\nname = "e1"\nzone = "entrance"\nnamespace = "a1b2c3d4e5f60718293a"\n'
            'instance = "01"\n',
            "zone_beacons[0].instance: expected 6 bytes as 12 hex digits",
        ),
        (ZONE + '[[zone_beacons]]\nname = "e1"\nzone = "entrance"\n', "zone_beacons[0]: needs uuid/major/minor"),
        ('[[coupon_rules]]\nname = "x"\nkind = "birthday"\n', 'coupon_rules[0].kind: expected "first_visit"'),
        (ZONE + ZONE, 'zones[1].name: duplicate zone name "entrance"'),
        ('[presence]\nscanner_zone = "attic"\n', 'presence.scanner_zone: "attic" is not declared'),
        ("[presence\n", "not valid TOML"),
    ],
)
def test_mistakes_name_the_file_and_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_registry(text, source="store-7/beacons.toml")
    assert str(caught.value).startswith("store-7/beacons.toml: ")
    assert message in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read beacon registry"):
        load_registry(tmp_path / "nope.toml")
