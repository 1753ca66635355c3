"""One received advertisement as a plain frozen value, independent of bleak's types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Advertisement:
    """What a scanner heard at time ``t`` (unix seconds), mirroring the recording format.

    ``address`` is the sender's (usually random, rotating) Bluetooth address. It is used only to
    decode and resolve this one advertisement and is never copied into presence state or events.
    """

    t: float
    address: str
    rssi: int
    local_name: str | None = None
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)
    service_data: Mapping[str, bytes] = field(default_factory=dict)
    service_uuids: tuple[str, ...] = ()
    tx_power: int | None = None


def from_bleak(device: Any, data: Any, t: float) -> Advertisement:
    """Build an Advertisement from bleak's ``BLEDevice`` and ``AdvertisementData``."""
    return Advertisement(
        t=t,
        address=device.address,
        rssi=data.rssi,
        local_name=data.local_name,
        manufacturer_data=dict(data.manufacturer_data),
        service_data=dict(data.service_data),
        service_uuids=tuple(data.service_uuids),
        tx_power=data.tx_power,
    )
