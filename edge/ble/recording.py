"""Recorded advertisements as JSON Lines (the fixed format of `tenpo ble scan --record`), and a
generator of realistic member-arrival recordings for demos and integration tests.

One line per advertisement::

    {"t": 1767225600.0, "address": "5A:1B:..", "rssi": -61, "local_name": null,
     "manufacturer_data": {"76": "0215..."}, "service_data": {"0000feaa-...": "00e3..."},
     "service_uuids": ["0000feaa-..."], "tx_power": null}
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from typing import Any

from tenpo.shared.beacon_id import WINDOW_S, app_rotating_id_at, ibeacon_major_minor

from .advert import Advertisement
from .decode import APPLE_COMPANY_ID, EDDYSTONE_SERVICE_UUID

EXAMPLE_MEMBER_APP_UUID = "7e4b1c2a-9d3f-4a61-b8e5-0c2f6d9a4e17"
"""The member-app UUID of firmware-config/beacons.toml (the example registry)."""


class RecordingStats:
    __slots__ = ("lines", "bad_lines")

    def __init__(self) -> None:
        self.lines = 0
        self.bad_lines = 0


def _int_or_none(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("not an integer")
    return value


def parse_recording_line(line: str, stats: RecordingStats | None = None) -> Advertisement | None:
    """One recorded advertisement, or None for a blank, malformed or wrongly typed line."""
    stats = stats if stats is not None else RecordingStats()
    if not line.strip():
        return None
    stats.lines += 1
    try:
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError("not an object")
        t = record["t"]
        rssi = record["rssi"]
        address = record["address"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ValueError("bad t")
        if isinstance(rssi, bool) or not isinstance(rssi, int) or not isinstance(address, str):
            raise ValueError("bad rssi or address")
        local_name = record.get("local_name")
        if local_name is not None and not isinstance(local_name, str):
            raise ValueError("bad local_name")
        manufacturer = {
            int(key, 10): bytes.fromhex(value)
            for key, value in (record.get("manufacturer_data") or {}).items()
        }
        if any(not 0 <= key <= 0xFFFF for key in manufacturer):
            raise ValueError("company id out of range")
        service = {
            str(key).lower(): bytes.fromhex(value)
            for key, value in (record.get("service_data") or {}).items()
        }
        uuids = record.get("service_uuids") or []
        if not isinstance(uuids, list) or not all(isinstance(u, str) for u in uuids):
            raise ValueError("bad service_uuids")
        return Advertisement(
            t=float(t),
            address=address,
            rssi=rssi,
            local_name=local_name,
            manufacturer_data=manufacturer,
            service_data=service,
            service_uuids=tuple(u.lower() for u in uuids),
            tx_power=_int_or_none(record.get("tx_power")),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        # json.JSONDecodeError is a ValueError; .items() on a non-dict raises AttributeError.
        stats.bad_lines += 1
        return None


def advertisement_to_record(adv: Advertisement) -> dict[str, Any]:
    return {
        "t": adv.t,
        "address": adv.address,
        "rssi": adv.rssi,
        "local_name": adv.local_name,
        "manufacturer_data": {str(k): v.hex() for k, v in adv.manufacturer_data.items()},
        "service_data": {k: v.hex() for k, v in adv.service_data.items()},
        "service_uuids": list(adv.service_uuids),
        "tx_power": adv.tx_power,
    }


def format_recording_line(adv: Advertisement) -> str:
    """The JSON Lines form of an advertisement (no trailing newline)."""
    return json.dumps(advertisement_to_record(adv), ensure_ascii=False, separators=(",", ":"))


def member_ibeacon_payload(secret: bytes, t: float, member_app_uuid: str, *, window_s: int = WINDOW_S) -> bytes:
    """The Apple manufacturer data (company id removed) a member's phone advertises at ``t``."""
    major, minor = ibeacon_major_minor(app_rotating_id_at(secret, t, window_s))
    measured_power = (-59) & 0xFF
    return (
        b"\x02\x15" + bytes.fromhex(member_app_uuid.replace("-", ""))
        + major.to_bytes(2, "big") + minor.to_bytes(2, "big") + bytes([measured_power])
    )  # fmt: skip


def member_eid_payload(secret: bytes, t: float, *, window_s: int = WINDOW_S) -> bytes:
    """The Eddystone service data (frame 0x30) an Android member app advertises at ``t``."""
    return bytes([0x30, (-18) & 0xFF]) + app_rotating_id_at(secret, t, window_s)


def _random_address(rng: random.Random) -> str:
    # A resolvable-private-looking address: the two top bits are 01, as phones use.
    first = (rng.randrange(256) & 0x3F) | 0x40
    rest = [rng.randrange(256) for _ in range(5)]
    return ":".join(f"{b:02X}" for b in [first, *rest])


def _rssi_profile(offset: float, walk_s: float, stand_s: float, far: float, near: float) -> float:
    if offset < walk_s:  # walking in: linear in dB, roughly log-distance
        return far + (near - far) * offset / walk_s
    if offset < walk_s + stand_s:
        return near
    return near + (far - near) * min(1.0, (offset - walk_s - stand_s) / walk_s)


def make_member_arrival_recording(
    secret: bytes,
    *,
    start_t: float = 1_767_225_600.0,  # 2026-01-01 00:00 UTC, on a window boundary
    member_app_uuid: str = EXAMPLE_MEMBER_APP_UUID,
    carrier: str = "ibeacon",
    walk_s: float = 20.0,
    stand_s: float = 120.0,
    rate_hz: float = 2.0,
    rssi_far: float = -95.0,
    rssi_near: float = -58.0,
    noise_db: float = 4.0,
    loss: float = 0.2,
    window_s: int = WINDOW_S,
    with_bystanders: bool = True,
    seed: int = 1,
) -> list[str]:
    """JSON lines of a member's phone walking in, standing ``stand_s`` seconds, and walking out.

    RSSI ramps from ``rssi_far`` to ``rssi_near`` and back with Gaussian noise and a fraction
    ``loss`` of adverts dropped, as a real scanner hears it. The identifier rotates with the
    window exactly as the app does. ``carrier`` is "ibeacon" (iOS and Android) or "eid" (Android).
    Bystanders add an iPhone's Continuity frames and an unregistered iBeacon, which must be ignored.
    """
    if carrier not in ("ibeacon", "eid"):
        raise ValueError('carrier must be "ibeacon" or "eid"')
    rng = random.Random(seed)
    address = _random_address(rng)
    bystander = _random_address(rng)
    total_s = 2 * walk_s + stand_s
    lines: list[str] = []
    for step in range(int(total_s * rate_hz) + 1):
        offset = step / rate_hz
        t = round(start_t + offset + rng.uniform(0, 0.4 / rate_hz), 3)
        if rng.random() >= loss:
            rssi = _rssi_profile(offset, walk_s, stand_s, rssi_far, rssi_near) + rng.gauss(0, noise_db)
            rssi = int(round(max(-110.0, min(-30.0, rssi))))
            if carrier == "ibeacon":
                manufacturer = {APPLE_COMPANY_ID: member_ibeacon_payload(secret, t, member_app_uuid, window_s=window_s)}
                service: dict[str, bytes] = {}
                uuids: tuple[str, ...] = ()
            else:
                manufacturer = {}
                service = {EDDYSTONE_SERVICE_UUID: member_eid_payload(secret, t, window_s=window_s)}
                uuids = (EDDYSTONE_SERVICE_UUID,)
            lines.append(format_recording_line(Advertisement(t, address, rssi, None, manufacturer, service, uuids)))
        if with_bystanders and step % 3 == 0:
            lines.append(format_recording_line(_bystander(rng, round(t + 0.05, 3), bystander, step)))
    return lines


def _bystander(rng: random.Random, t: float, address: str, step: int) -> Advertisement:
    rssi = int(rng.gauss(-80, 5))
    if step % 2 == 0:  # Apple Continuity "Nearby Info": same company id, not an iBeacon
        return Advertisement(t, address, rssi, None, {APPLE_COMPANY_ID: bytes.fromhex("10050a1c77f95b")}, tx_power=5)
    foreign = bytes.fromhex("0215426c7565436861726d426561636f6e730efe1355c5")  # a neighbour's BlueCharm beacon
    return Advertisement(t, "C4:7C:8D:6A:11:22", rssi, "BlueCharm_177999", {APPLE_COMPANY_ID: foreign})


def iter_recording(lines: Iterator[str] | list[str], stats: RecordingStats | None = None) -> Iterator[Advertisement]:
    """Parse many lines, skipping bad ones (counted in ``stats``)."""
    for line in lines:
        adv = parse_recording_line(line, stats)
        if adv is not None:
            yield adv
