"""Pure decoders for beacon frames, from the fields bleak's ``AdvertisementData`` gives.

bleak strips the 2-byte company id from manufacturer data (it becomes the dict key) and the
16-bit service UUID from service data (the key is the 128-bit UUID string in lower case), so every
offset below is relative to what follows those ids. Layouts: Apple "Proximity Beacon
Specification" (iBeacon), AltBeacon/spec README, google/eddystone protocol-specification.md and
the per-frame READMEs. Multi-byte fields are big-endian in all three.

Nothing here raises on bad bytes: a decoder returns None and bumps a counter in ``DecodeStats``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

APPLE_COMPANY_ID = 0x004C
EDDYSTONE_SERVICE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"

_IBEACON_PREFIX = b"\x02\x15"
_ALTBEACON_PREFIX = b"\xbe\xac"
_IBEACON_BODY = struct.Struct(">HHb")  # major, minor, measured power (bytes 18..22)
_ALTBEACON_TAIL = struct.Struct(">HHbB")  # id2, id3, reference RSSI, reserved (bytes 18..23)
_TLM_BODY = struct.Struct(">HhII")  # VBATT mV, TEMP 8.8 signed, ADV_CNT, SEC_CNT (0.1 s)
_TLM_NO_TEMPERATURE = -0x8000  # 0x8000 read as signed: "not supported"

_FRAME_UID, _FRAME_URL, _FRAME_TLM, _FRAME_EID = 0x00, 0x10, 0x20, 0x30

URL_SCHEMES: tuple[str, ...] = ("http://www.", "https://www.", "http://", "https://")
URL_EXPANSIONS: tuple[str, ...] = (
    ".com/", ".org/", ".edu/", ".net/", ".info/", ".biz/", ".gov/",
    ".com", ".org", ".edu", ".net", ".info", ".biz", ".gov",
)  # fmt: skip

# Byte -> text for an encoded URL; None marks the reserved codes 0x0e-0x20 and 0x7f-0xff.
_URL_BYTE_TEXT: tuple[str | None, ...] = tuple(
    URL_EXPANSIONS[b] if b < len(URL_EXPANSIONS) else (chr(b) if 0x21 <= b <= 0x7E else None)
    for b in range(256)
)


class DecodeStats:
    """Counters a caller can read: what was decoded, what was bad, what was not a beacon."""

    __slots__ = ("decoded", "malformed", "unsupported")

    def __init__(self) -> None:
        self.decoded = 0
        self.malformed = 0  # looked like a beacon frame but the bytes were wrong or short
        self.unsupported = 0  # an Eddystone frame type we do not read (eTLM, reserved types)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class IBeacon:
    type: ClassVar[str] = "ibeacon"
    uuid: str
    major: int
    minor: int
    measured_power: int  # RSSI at 1 m, dBm


@dataclass(frozen=True, slots=True)
class AltBeacon:
    type: ClassVar[str] = "altbeacon"
    uuid: str  # first 16 bytes of the 20-byte beacon id
    major: int  # id2
    minor: int  # id3
    measured_power: int  # reference RSSI at 1 m, dBm


@dataclass(frozen=True, slots=True)
class EddystoneUID:
    type: ClassVar[str] = "eddystone-uid"
    namespace: str  # 10 bytes, lower-case hex
    instance: str  # 6 bytes, lower-case hex
    tx_power: int  # dBm at 0 m


@dataclass(frozen=True, slots=True)
class EddystoneURL:
    type: ClassVar[str] = "eddystone-url"
    url: str
    tx_power: int


@dataclass(frozen=True, slots=True)
class EddystoneTLM:
    type: ClassVar[str] = "eddystone-tlm"
    battery_mv: int | None  # None when the beacon reports 0 (not battery powered)
    temperature_c: float | None  # None when the beacon reports 0x8000
    adv_count: int
    uptime_s: float  # SEC_CNT is in 0.1 s units


@dataclass(frozen=True, slots=True)
class EddystoneEID:
    type: ClassVar[str] = "eddystone-eid"
    eid: str  # 8 bytes, lower-case hex
    tx_power: int


Frame = IBeacon | AltBeacon | EddystoneUID | EddystoneURL | EddystoneTLM | EddystoneEID

# Beacon UUIDs repeat endlessly (a store has a handful), so formatting them once pays off.
_uuid_text_cache: dict[bytes, str] = {}
_UUID_CACHE_LIMIT = 4096


def _uuid_text(raw: bytes) -> str:
    text = _uuid_text_cache.get(raw)
    if text is None:
        h = raw.hex()
        text = f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        if len(_uuid_text_cache) >= _UUID_CACHE_LIMIT:
            _uuid_text_cache.clear()  # junk UUIDs must not grow memory without bound
        _uuid_text_cache[raw] = text
    return text


def decode_ibeacon(payload: bytes, stats: DecodeStats) -> IBeacon | None:
    """Apple manufacturer data (company id 0x004C removed). Other Apple frames give None uncounted."""
    if payload[:2] != _IBEACON_PREFIX:
        return None  # Continuity frames (Nearby Info, AirDrop...) share the company id
    if len(payload) < 23:
        stats.malformed += 1
        return None
    major, minor, power = _IBEACON_BODY.unpack_from(payload, 18)
    stats.decoded += 1
    return IBeacon(_uuid_text(payload[2:18]), major, minor, power)


def decode_altbeacon(payload: bytes, stats: DecodeStats) -> AltBeacon | None:
    """Manufacturer data of any company id that starts with the AltBeacon code 0xBEAC."""
    if payload[:2] != _ALTBEACON_PREFIX:
        return None
    if len(payload) < 24:
        stats.malformed += 1
        return None
    id2, id3, power, _reserved = _ALTBEACON_TAIL.unpack_from(payload, 18)
    stats.decoded += 1
    return AltBeacon(_uuid_text(payload[2:18]), id2, id3, power)


def _signed8(value: int) -> int:
    return value - 256 if value > 127 else value


def _decode_url(payload: bytes, stats: DecodeStats) -> EddystoneURL | None:
    if len(payload) < 4 or payload[2] >= len(URL_SCHEMES):
        stats.malformed += 1
        return None
    parts = [URL_SCHEMES[payload[2]]]
    for byte in payload[3:]:
        text = _URL_BYTE_TEXT[byte]
        if text is None:
            stats.malformed += 1
            return None
        parts.append(text)
    stats.decoded += 1
    return EddystoneURL("".join(parts), _signed8(payload[1]))


def decode_eddystone(payload: bytes, stats: DecodeStats) -> Frame | None:
    """Service data of UUID 0xFEAA (the UUID removed). Byte 0 is the frame type."""
    if not payload:
        stats.malformed += 1
        return None
    frame_type = payload[0]
    size = len(payload)
    if frame_type == _FRAME_UID:
        if size < 18:  # the 2 RFU bytes are often left out, so they are optional
            stats.malformed += 1
            return None
        stats.decoded += 1
        return EddystoneUID(payload[2:12].hex(), payload[12:18].hex(), _signed8(payload[1]))
    if frame_type == _FRAME_URL:
        return _decode_url(payload, stats)
    if frame_type == _FRAME_TLM:
        if size < 2:
            stats.malformed += 1
            return None
        if payload[1] != 0x00:  # version 0x01 is encrypted eTLM
            stats.unsupported += 1
            return None
        if size < 14:
            stats.malformed += 1
            return None
        vbatt, temp, adv_count, sec_count = _TLM_BODY.unpack_from(payload, 2)
        stats.decoded += 1
        return EddystoneTLM(
            vbatt or None,
            None if temp == _TLM_NO_TEMPERATURE else temp / 256.0,
            adv_count,
            sec_count / 10.0,
        )
    if frame_type == _FRAME_EID:
        if size < 10:
            stats.malformed += 1
            return None
        stats.decoded += 1
        return EddystoneEID(payload[2:10].hex(), _signed8(payload[1]))
    stats.unsupported += 1
    return None


def decode_frames(
    manufacturer_data: Mapping[int, bytes],
    service_data: Mapping[str, bytes],
    stats: DecodeStats,
) -> list[Frame]:
    """Every beacon frame in one advertisement (usually zero or one). Never raises on bad bytes."""
    frames: list[Frame] = []
    for company_id, payload in manufacturer_data.items():
        head = payload[:2]
        if head == _IBEACON_PREFIX and company_id == APPLE_COMPANY_ID:
            frame: Frame | None = decode_ibeacon(payload, stats)
        elif head == _ALTBEACON_PREFIX:
            frame = decode_altbeacon(payload, stats)
        else:
            continue
        if frame is not None:
            frames.append(frame)
    eddystone = service_data.get(EDDYSTONE_SERVICE_UUID)
    if eddystone is not None:
        frame = decode_eddystone(eddystone, stats)
        if frame is not None:
            frames.append(frame)
    return frames


def frame_to_dict(frame: Frame) -> dict[str, object]:
    """The fixed JSON shape of a decoded frame: ``type`` first, then the frame's own fields."""
    out: dict[str, object] = {"type": frame.type}
    for name in frame.__slots__:
        out[name] = getattr(frame, name)
    return out
