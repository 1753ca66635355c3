"""ThingMagic/Jadak Mercury serial protocol (M6E Nano, SparkFun Simultaneous RFID Reader): pure codec.

Frames (docs/rfid.md, "Mercury frames", from the SparkFun library and the Mercury API):
    host -> module   FF LEN OP DATA[LEN] CRC_HI CRC_LO                 (LEN + 5 bytes)
    module -> host   FF LEN OP STATUS_HI STATUS_LO DATA[LEN] CRC(2)     (LEN + 7 bytes)
The CRC covers everything after FF. ``Decoder`` reads module frames, ``CommandDecoder`` host frames
(the simulator's side); both resynchronise on the next FF after garbage or a cut frame.
"""

from __future__ import annotations

import time
from binascii import crc_hqx
from collections.abc import Callable
from typing import Final, Generic, TypeVar

import msgspec

from tenpo.edge.rfid.reads import DecoderStats, TagRead

HEADER: Final = 0xFF
MAX_LEN: Final = 0xF8  # Mercury API: a larger LEN byte cannot start a frame

# Opcodes (Mercury API serial_reader_imp.h; docs/rfid.md, "Mercury frames").
OP_BOOT: Final = 0x04
OP_VERSION: Final = 0x03
OP_SET_BAUD_RATE: Final = 0x06
OP_READ_TAG_ID_MULTIPLE: Final = 0x22
OP_MULTI_PROTOCOL_TAG_OP: Final = 0x2F
OP_GET_TEMPERATURE: Final = 0x72
OP_SET_ANTENNA_PORT: Final = 0x91
OP_SET_READ_TX_POWER: Final = 0x92
OP_SET_TAG_PROTOCOL: Final = 0x93
OP_SET_REGION: Final = 0x97
OP_SET_READER_OPT_PARAMS: Final = 0x9A

KNOWN_OPCODES: Final = frozenset(
    {0x03, 0x04, 0x06, 0x09, 0x0C, 0x21, 0x22, 0x23, 0x24, 0x26, 0x28, 0x29, 0x2A, 0x2F, 0x61, 0x62,
     0x63, 0x65, 0x66, 0x67, 0x68, 0x6A, 0x6B, 0x71, 0x72, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
     0x98, 0x9A, 0x9B, 0xAA}
)

# Status codes (Mercury API tmr_status.h; docs/rfid.md, "Mercury frames").
STATUS_OK: Final = 0x0000
STATUS_NO_TAGS_FOUND: Final = 0x0400
STATUS_NAMES: Final[dict[int, str]] = {
    0x0100: "wrong number of data bytes",
    0x0101: "invalid opcode",
    0x0103: "TX power too high",
    0x0105: "invalid parameter value",
    0x0106: "TX power too low",
    0x010A: "unsupported baud rate",
    0x010B: "unsupported region",
    0x0400: "no tags found",
    0x0402: "invalid tag protocol",
    0x0503: "antenna not connected",
    0x0504: "over temperature, throttling",
    0x0505: "high return loss (check the antenna)",
    0x0601: "tag buffer full",
    0x7F01: "firmware assertion failed",
}

REGIONS: Final[dict[str, int]] = {
    "NA": 0x0D, "NA2": 0x0D, "NA3": 0x0E, "IN": 0x04, "JP": 0x05, "PRC": 0x06, "EU3": 0x08,
    "KR2": 0x09, "AU": 0x0B, "NZ": 0x0C, "OPEN": 0xFF,
}
PROTOCOL_GEN2: Final = 0x05

# Tag-read metadata flags, in the order their fields follow each other (docs/rfid.md, "Mercury tag
# notifications").
META_READ_COUNT: Final = 0x0001
META_RSSI: Final = 0x0002
META_ANTENNA: Final = 0x0004
META_FREQUENCY: Final = 0x0008
META_TIMESTAMP: Final = 0x0010
META_PHASE: Final = 0x0020
META_PROTOCOL: Final = 0x0040
META_DATA: Final = 0x0080
META_GPIO: Final = 0x0100
META_ALL: Final = 0x01FF


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, f"status 0x{status:04X}")


# --------------------------------------------------------------------------------------------------
# CRC


def tm_crc(data: bytes | bytearray | memoryview) -> int:
    """The ThingMagic CRC of the bytes after the FF header.

    It is the augmented CRC-16 (poly 0x1021, init 0xFFFF): the same as the common non-augmented
    CCITT CRC with init 0x1D0F over all but the last two bytes, XOR those two bytes, which lets
    binascii's C implementation do the work (docs/rfid.md, "The Mercury CRC").
    """
    if len(data) >= 2:
        return crc_hqx(data[:-2], 0x1D0F) ^ (data[-2] << 8) ^ data[-1]
    crc = 0xFFFF  # the nibble-table form of the Mercury API, for frames too short for the above
    for byte in bytes(data):
        crc = (((crc << 4) | (byte >> 4)) & 0xFFFF) ^ _NIBBLE_TABLE[crc >> 12]
        crc = (((crc << 4) | (byte & 0xF)) & 0xFFFF) ^ _NIBBLE_TABLE[crc >> 12]
    return crc


_NIBBLE_TABLE: Final = tuple(
    (0x1021 * (n & 1)) ^ (0x2042 * (n >> 1 & 1)) ^ (0x4084 * (n >> 2 & 1)) ^ (0x8108 * (n >> 3 & 1))
    for n in range(16)
)


# --------------------------------------------------------------------------------------------------
# Commands (host -> module)


def build_command(opcode: int, data: bytes = b"") -> bytes:
    """``FF LEN OP DATA CRC``."""
    body = bytes((len(data), opcode)) + data
    return b"\xff" + body + tm_crc(body).to_bytes(2, "big")


def build_response(opcode: int, data: bytes = b"", status: int = STATUS_OK) -> bytes:
    """A module frame, ``FF LEN OP STATUS DATA CRC`` (the simulator speaks this side)."""
    body = bytes((len(data), opcode)) + status.to_bytes(2, "big") + data
    return b"\xff" + body + tm_crc(body).to_bytes(2, "big")


def cmd_get_version() -> bytes:
    return build_command(OP_VERSION)


def cmd_set_baud_rate(baud: int) -> bytes:
    return build_command(OP_SET_BAUD_RATE, baud.to_bytes(4, "big"))


def cmd_set_region(region: str | int) -> bytes:
    code = REGIONS[region.upper()] if isinstance(region, str) else region
    return build_command(OP_SET_REGION, bytes((code,)))


def cmd_set_read_power(dbm: float) -> bytes:
    """Read TX power for every port; the module takes centi-dBm, signed 16-bit."""
    return build_command(OP_SET_READ_TX_POWER, round(dbm * 100).to_bytes(2, "big", signed=True))


def cmd_set_tag_protocol(protocol: int = PROTOCOL_GEN2) -> bytes:
    return build_command(OP_SET_TAG_PROTOCOL, protocol.to_bytes(2, "big"))


def cmd_set_antenna_port(tx: int, rx: int | None = None) -> bytes:
    return build_command(OP_SET_ANTENNA_PORT, bytes((tx, tx if rx is None else rx)))


def cmd_set_read_filter(enabled: bool) -> bytes:
    """Reader option 0x0C: with the filter on the module reports each tag once per cycle only."""
    return build_command(OP_SET_READER_OPT_PARAMS, bytes((0x01, 0x0C, 1 if enabled else 0)))


def cmd_start_continuous_read(metadata_flags: int = META_ALL, cycle_ms: int = 1000) -> bytes:
    """The continuous-read command of the SparkFun logs (docs/rfid.md): an embedded
    READ_TAG_ID_MULTIPLE, streaming."""
    embedded = bytes((OP_READ_TAG_ID_MULTIPLE, 0x10, 0x00, 0x1B))
    embedded += cycle_ms.to_bytes(2, "big") + metadata_flags.to_bytes(2, "big")
    # The byte before the embedded command counts its bytes after the opcode (07 in the SparkFun log).
    data = b"\x00\x00\x01\x22\x00\x00" + bytes((PROTOCOL_GEN2, len(embedded) - 1)) + embedded
    return build_command(OP_MULTI_PROTOCOL_TAG_OP, data)


def cmd_stop_continuous_read() -> bytes:
    return build_command(OP_MULTI_PROTOCOL_TAG_OP, b"\x00\x00\x02")


def gen2_crc(pc_and_epc: bytes) -> int:
    """The tag's own CRC-16 over PC + EPC (CRC-16/GENIBUS), as readers pass it on."""
    return crc_hqx(pc_and_epc, 0xFFFF) ^ 0xFFFF


def build_tag_notification(
    epc: bytes,
    rssi: int = -60,
    antenna: int = 1,
    frequency_khz: int = 920_400,
    reader_ms: int = 0,
    phase: int = 0,
    read_count: int = 1,
    flags: int = META_ALL,
) -> bytes:
    """A streaming 0x22 tag record as the module sends it (for the simulator and tests)."""
    meta = bytearray()
    if flags & META_READ_COUNT:
        meta.append(read_count)
    if flags & META_RSSI:
        meta.append(rssi & 0xFF)
    if flags & META_ANTENNA:
        meta.append((antenna << 4) | antenna)
    if flags & META_FREQUENCY:
        meta += frequency_khz.to_bytes(3, "big")
    if flags & META_TIMESTAMP:
        meta += reader_ms.to_bytes(4, "big")
    if flags & META_PHASE:
        meta += phase.to_bytes(2, "big")
    if flags & META_PROTOCOL:
        meta.append(PROTOCOL_GEN2)
    if flags & META_DATA:
        meta += b"\x00\x00"
    if flags & META_GPIO:
        meta.append(0x0F)
    pc_epc = ((len(epc) // 2) << 11).to_bytes(2, "big") + epc
    tag = pc_epc + gen2_crc(pc_epc).to_bytes(2, "big")
    data = b"\x10\x00\x1b" + flags.to_bytes(2, "big") + b"\x01" + bytes(meta)
    data += (len(tag) * 8).to_bytes(2, "big") + tag
    return build_response(OP_READ_TAG_ID_MULTIPLE, data)


# --------------------------------------------------------------------------------------------------
# Events (module -> host)


class Response(msgspec.Struct, frozen=True):
    """A successful reply to a command."""

    opcode: int
    data: bytes


class ReaderError(msgspec.Struct, frozen=True):
    """A reply with a non-zero status."""

    opcode: int
    status: int

    @property
    def name(self) -> str:
        return status_name(self.status)


class KeepAlive(msgspec.Struct, frozen=True):
    """About once a second while reading; a status other than 'no tags found' is a warning."""

    status: int

    @property
    def warning(self) -> str | None:
        return None if self.status in (STATUS_OK, STATUS_NO_TAGS_FOUND) else status_name(self.status)


class Temperature(msgspec.Struct, frozen=True):
    celsius: int


class StatusReport(msgspec.Struct, frozen=True):
    """A streaming status message this codec does not interpret further."""

    data: bytes


class Command(msgspec.Struct, frozen=True):
    """A host frame, as the module (or the simulator) sees it."""

    opcode: int
    data: bytes


Event = TagRead | Response | ReaderError | KeepAlive | Temperature | StatusReport


class VersionInfo(msgspec.Struct, frozen=True):
    bootloader: str
    hardware: str
    firmware_date: str
    firmware: str
    protocols: int


def parse_version(data: bytes) -> VersionInfo | None:
    """Payload of the VERSION reply (Mercury API fillVersionInfo)."""
    if len(data) < 20:
        return None
    return VersionInfo(
        bootloader=data[0:4].hex("."),
        hardware=data[4:8].hex("."),
        firmware_date=data[8:12].hex(),
        firmware=data[12:16].hex("."),
        protocols=int.from_bytes(data[16:20], "big"),
    )


def parse_tag_record(frame: bytes, ts: float) -> TagRead | None:
    """A 0x22 tag notification, field by field as its metadata flags say; None if malformed."""
    try:
        flags = (frame[8] << 8) | frame[9]
        if flags & ~META_ALL:
            return None  # a field we do not know the size of: we cannot find the EPC
        p = 11
        read_count, rssi, antenna = 1, 0, 1
        frequency = reader_ms = phase = None
        if flags & META_READ_COUNT:
            read_count = frame[p]
            p += 1
        if flags & META_RSSI:
            rssi = frame[p] - 256 if frame[p] & 0x80 else frame[p]
            p += 1
        if flags & META_ANTENNA:
            antenna = frame[p] >> 4  # high nibble TX port, low nibble RX port
            p += 1
        if flags & META_FREQUENCY:
            frequency = (frame[p] << 16) | (frame[p + 1] << 8) | frame[p + 2]
            p += 3
        if flags & META_TIMESTAMP:
            reader_ms = int.from_bytes(frame[p : p + 4], "big")
            p += 4
        if flags & META_PHASE:
            phase = (frame[p] << 8) | frame[p + 1]
            p += 2
        if flags & META_PROTOCOL:
            p += 1
        if flags & META_DATA:
            p += 2 + (((frame[p] << 8) | frame[p + 1]) + 7) // 8
        if flags & META_GPIO:
            p += 1
        epc_bits = (frame[p] << 8) | frame[p + 1]
        p += 2
        end = len(frame) - 2  # frame CRC follows
        if epc_bits & 7 or p + (epc_bits >> 3) != end:
            return None
        pc = (frame[p] << 8) | frame[p + 1]
        p += 4 if pc & 0x0200 else 2  # an XPC_W1 word follows the PC when its bit is set
        if end - 2 <= p:
            return None
        return TagRead(
            frame[p : end - 2].hex().upper(), rssi, antenna, ts, "mercury", read_count,
            frequency, phase, pc, reader_ms,
        )
    except IndexError:
        return None


def _stream_event(frame: bytes, length: int, status: int, ts: float) -> Event | None:
    """Classify a 0x22 message of the streaming read (SparkFun parseResponse; docs/rfid.md, "Mercury
    tag notifications")."""
    if length == 0 or (length == 0x0E and status == STATUS_NO_TAGS_FOUND):
        return KeepAlive(status)
    if status != STATUS_OK:
        return ReaderError(OP_READ_TAG_ID_MULTIPLE, status)
    if length == 0x0A:
        byte = frame[14]
        return Temperature(byte - 256 if byte & 0x80 else byte)
    type_pos = 10 if frame[5] & 0x10 else 8
    if length > type_pos - 4 and frame[type_pos] == 0x01:
        return parse_tag_record(frame, ts)
    return StatusReport(frame[5:-2])


# --------------------------------------------------------------------------------------------------
# Stream decoders


EventT = TypeVar("EventT")


class _FrameDecoder(Generic[EventT]):
    """Finds CRC-checked frames in a byte stream; subclasses turn a frame into an event."""

    _overhead: int  # bytes beyond DATA: 5 for host frames, 7 for module frames

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.stats = DecoderStats()
        self._buffer = bytearray()
        self._clock = clock

    def feed(self, chunk: bytes) -> list[EventT]:
        """Add bytes from the line; return every event completed by them. Never raises."""
        buf = self._buffer
        buf += chunk
        stats = self.stats
        overhead = self._overhead
        ts = self._clock()
        events: list[EventT] = []
        pos = 0
        size = len(buf)
        while True:
            start = buf.find(HEADER, pos)
            if start < 0:
                stats.bytes_skipped += size - pos
                pos = size
                break
            stats.bytes_skipped += start - pos
            pos = start
            if size - start < 3:
                break
            length = buf[start + 1]
            if length > MAX_LEN or buf[start + 2] not in KNOWN_OPCODES:
                stats.bytes_skipped += 1  # an FF in noise, not a frame start
                pos = start + 1
                continue
            end = start + length + overhead
            if end > size:
                break  # wait for the rest
            frame = bytes(buf[start:end])
            if tm_crc(memoryview(frame)[1:-2]) != (frame[-2] << 8) | frame[-1]:
                stats.reject_checksum()
                pos = start + 1  # a cut frame: the next frame may begin inside it
                continue
            event = self._event(frame, length, ts)
            if event is None:
                stats.reject_payload()
            else:
                stats.frames_ok += 1
                events.append(event)
            pos = end
        del buf[:pos]
        return events

    def idle(self) -> list[EventT]:
        """The line went quiet with a partial frame pending: it was cut, so rescan past it."""
        events: list[EventT] = []
        if self._buffer:
            self.stats.reject_length()
            while self._buffer:
                del self._buffer[:1]
                events += self.feed(b"")
        return events

    def _event(self, frame: bytes, length: int, ts: float) -> EventT | None:
        raise NotImplementedError


class Decoder(_FrameDecoder[Event]):
    """Module -> host frames: tag reads, replies, keep-alives, errors."""

    _overhead = 7

    def _event(self, frame: bytes, length: int, ts: float) -> Event | None:
        opcode = frame[2]
        status = (frame[3] << 8) | frame[4]
        if opcode == OP_READ_TAG_ID_MULTIPLE:
            return _stream_event(frame, length, status, ts)
        if status != STATUS_OK:
            return ReaderError(opcode, status)
        return Response(opcode, frame[5:-2])


class CommandDecoder(_FrameDecoder[Command]):
    """Host -> module frames (what the simulator receives)."""

    _overhead = 5

    def _event(self, frame: bytes, length: int, ts: float) -> Command:
        return Command(frame[2], frame[3:-2])


def is_stop_acknowledgement(event: object) -> bool:
    """The 0x2F reply whose first data byte is 02: reading stopped, every read already sent."""
    return isinstance(event, Response) and event.opcode == OP_MULTI_PROTOCOL_TAG_OP and event.data[:1] == b"\x02"
