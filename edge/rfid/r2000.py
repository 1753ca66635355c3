"""R2000-module "UHF RFID Reader Serial Interface Protocol" (0xA0 frames; YR902/YR903/IND903): pure codec.

Frame (docs/rfid.md, "R2000 frames and replies"), both directions:
    A0 | Len | Address | Cmd | Data | Check        Len = bytes after Len; Check makes sum(frame) == 0 mod 256
The 8-bit checksum is weak, so a candidate frame is also checked for shape before it is believed, and
a candidate that fails is skipped one byte at a time (resync) rather than as a whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final, Generic, TypeVar

import msgspec

from tenpo.edge.rfid.reads import DecoderStats, TagRead

HEAD: Final = 0xA0
BROADCAST: Final = 0xFF

CMD_RESET: Final = 0x70
CMD_SET_BAUD: Final = 0x71
CMD_GET_FIRMWARE_VERSION: Final = 0x72
CMD_SET_WORK_ANTENNA: Final = 0x74
CMD_GET_WORK_ANTENNA: Final = 0x75
CMD_SET_OUTPUT_POWER: Final = 0x76
CMD_GET_OUTPUT_POWER: Final = 0x77
CMD_SET_FREQUENCY_REGION: Final = 0x78
CMD_GET_FREQUENCY_REGION: Final = 0x79
CMD_INVENTORY: Final = 0x80
CMD_REAL_TIME_INVENTORY: Final = 0x89
CMD_FAST_SWITCH_INVENTORY: Final = 0x8A
CMD_GET_INVENTORY_BUFFER: Final = 0x90
CMD_GET_AND_RESET_INVENTORY_BUFFER: Final = 0x91
CMD_GET_BUFFER_TAG_COUNT: Final = 0x92
CMD_RESET_INVENTORY_BUFFER: Final = 0x93

KNOWN_COMMANDS: Final = frozenset(
    set(range(0x60, 0x6B)) | set(range(0x70, 0x80)) | set(range(0x80, 0x96)) | set(range(0xB0, 0xB5))
)

# Result codes of one-byte replies (pyImpinj ImpinjR2KGlobalErrors; docs/rfid.md).
SUCCESS: Final = 0x10
ERROR_NAMES: Final[dict[int, str]] = {
    0x10: "success",
    0x11: "command failed",
    0x22: "antenna missing",
    0x31: "inventory error",
    0x36: "no tag found",
    0x38: "inventory buffer empty",
    0x41: "invalid parameter",
    0x48: "output power out of range",
}

# Frequency-region presets for CMD_SET_FREQUENCY_REGION: (region code, first index, last index).
# Index -> MHz follows FREQUENCY_KHZ below. Presets beyond FCC/ETSI/CHN are unconfirmed (docs/rfid.md).
REGIONS: Final[dict[str, tuple[int, int, int]]] = {
    "FCC": (0x01, 7, 59),
    "ETSI": (0x02, 0, 6),
    "CHN": (0x03, 43, 53),
}

# Frequency index -> kHz (pyImpinj constant.py): 0..6 = 865.0..868.0 MHz, 7..59 = 902.0..928.0 MHz.
FREQUENCY_KHZ: Final = tuple(865_000 + 500 * i for i in range(7)) + tuple(
    902_000 + 500 * i for i in range(53)
)

# pyImpinj's RSSI conversion (dBm = raw - 129); the manuals carry a table instead (UNCERTAIN).
RSSI_OFFSET: Final = 129


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, f"error 0x{code:02X}")


def checksum(frame_without_check: bytes | bytearray) -> int:
    """Two's complement of the byte sum (the manual's C code)."""
    return -sum(frame_without_check) & 0xFF


# --------------------------------------------------------------------------------------------------
# Commands


def build_frame(cmd: int, data: bytes = b"", address: int = BROADCAST) -> bytes:
    body = bytes((HEAD, len(data) + 3, address, cmd)) + data
    return body + bytes((checksum(body),))


def cmd_get_firmware_version(address: int = BROADCAST) -> bytes:
    return build_frame(CMD_GET_FIRMWARE_VERSION, address=address)


def cmd_reset(address: int = BROADCAST) -> bytes:
    return build_frame(CMD_RESET, address=address)


def cmd_set_work_antenna(antenna: int, address: int = BROADCAST) -> bytes:
    """Antenna numbers are 1-based here as on the reader's case; the wire carries 0..3."""
    return build_frame(CMD_SET_WORK_ANTENNA, bytes((antenna - 1,)), address)


def cmd_set_output_power(dbm: int | Sequence[int], address: int = BROADCAST) -> bytes:
    """One power for every port, or one per port (the 4-byte form, pyImpinj)."""
    powers = [dbm] * 4 if isinstance(dbm, int) else list(dbm)
    return build_frame(CMD_SET_OUTPUT_POWER, bytes(powers), address)


def cmd_set_frequency_region(region: str, address: int = BROADCAST) -> bytes:
    return build_frame(CMD_SET_FREQUENCY_REGION, bytes(REGIONS[region.upper()]), address)


def cmd_real_time_inventory(repeat: int = 1, address: int = BROADCAST) -> bytes:
    return build_frame(CMD_REAL_TIME_INVENTORY, bytes((repeat,)), address)


def cmd_fast_switch_inventory(
    antennas: Sequence[tuple[int, int]], interval_ms: int = 0, repeat: int = 1,
    address: int = BROADCAST,
) -> bytes:
    """Cycle through up to four (antenna 1..4, loops) pairs; unused slots are switched off (FF)."""
    slots = [(a - 1, loops) for a, loops in antennas[:4]] + [(0xFF, 0)] * (4 - len(antennas[:4]))
    data = bytes(b for pair in slots for b in pair) + bytes((interval_ms, repeat))
    return build_frame(CMD_FAST_SWITCH_INVENTORY, data, address)


def cmd_inventory(repeat: int = 1, address: int = BROADCAST) -> bytes:
    return build_frame(CMD_INVENTORY, bytes((repeat,)), address)


def cmd_get_inventory_buffer(reset: bool = False, address: int = BROADCAST) -> bytes:
    cmd = CMD_GET_AND_RESET_INVENTORY_BUFFER if reset else CMD_GET_INVENTORY_BUFFER
    return build_frame(cmd, address=address)


def build_tag_record(
    epc: bytes, antenna: int = 1, rssi: int = -60, frequency_index: int = 0,
    cmd: int = CMD_REAL_TIME_INVENTORY, address: int = BROADCAST,
) -> bytes:
    """A 0x89/0x8A tag record as the module sends it (for the simulator and tests)."""
    freq_ant = (frequency_index << 2) | (antenna - 1)
    pc = ((len(epc) // 2) << 11).to_bytes(2, "big")
    return build_frame(cmd, bytes((freq_ant,)) + pc + epc + bytes((rssi + RSSI_OFFSET,)), address)


def build_round_end(
    total_reads: int, antenna: int = 1, read_rate: int = 0, address: int = BROADCAST
) -> bytes:
    """The V3.x 0x89 end-of-round summary."""
    data = bytes((antenna - 1,)) + read_rate.to_bytes(2, "big") + total_reads.to_bytes(4, "big")
    return build_frame(CMD_REAL_TIME_INVENTORY, data, address)


# --------------------------------------------------------------------------------------------------
# Events


class CommandResult(msgspec.Struct, frozen=True):
    """A one-byte reply: success (0x10) or an error code."""

    address: int
    cmd: int
    code: int

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS

    @property
    def name(self) -> str:
        return error_name(self.code)


class RoundEnd(msgspec.Struct, frozen=True):
    """End of an inventory round (0x89: antenna, rate, total; 0x8A: total, duration)."""

    address: int
    cmd: int
    total_reads: int
    antenna: int | None = None
    read_rate: int | None = None  # tags per second
    duration_ms: int | None = None


class InventoryResult(msgspec.Struct, frozen=True):
    """Reply to CMD_INVENTORY (reads went to the module's buffer)."""

    address: int
    antenna: int
    tag_count: int
    read_rate: int
    total_reads: int


class Response(msgspec.Struct, frozen=True):
    """Any other reply (firmware version, power, region...), payload as sent."""

    address: int
    cmd: int
    data: bytes


class Command(msgspec.Struct, frozen=True):
    """A host frame, as the module (or the simulator) sees it."""

    address: int
    cmd: int
    data: bytes


Event = TagRead | CommandResult | RoundEnd | InventoryResult | Response


def _tag(freq_ant: int, pc: int, epc: bytes, raw_rssi: int, ts: float, count: int = 1) -> TagRead:
    index = freq_ant >> 2
    return TagRead(
        epc.hex().upper(), raw_rssi - RSSI_OFFSET, (freq_ant & 3) + 1, ts, "r2000", count,
        FREQUENCY_KHZ[index] if index < len(FREQUENCY_KHZ) else None, None, pc,
    )


def _inventory_event(frame: bytes, address: int, cmd: int, ts: float) -> Event | None:
    size = len(frame) - 5  # data bytes
    if size == 1:
        return CommandResult(address, cmd, frame[4])
    if size == 7:
        if cmd == CMD_REAL_TIME_INVENTORY:
            return RoundEnd(address, cmd, int.from_bytes(frame[7:11], "big"), frame[4] + 1,
                            (frame[5] << 8) | frame[6])
        return RoundEnd(address, cmd, int.from_bytes(frame[4:7], "big"),
                        duration_ms=int.from_bytes(frame[7:11], "big"))
    if size == 5:  # V2.x firmware: antenna + total, no rate
        return RoundEnd(address, cmd, int.from_bytes(frame[5:9], "big"), frame[4] + 1)
    epc_len = size - 4  # FreqAnt, PC(2), EPC, RSSI
    pc = (frame[5] << 8) | frame[6]
    if epc_len < 2 or ((pc >> 11) << 1) != epc_len:
        return None  # the PC word's length field must agree with the frame
    return _tag(frame[4], pc, frame[7 : 7 + epc_len], frame[-2], ts)


def _buffer_event(frame: bytes, address: int, cmd: int, ts: float) -> Event | None:
    size = len(frame) - 5
    if size == 1:
        return CommandResult(address, cmd, frame[4])
    data_len = frame[6]  # after TagCount(2): DataLen, PC+EPC+CRC, RSSI, FreqAnt, InvCount
    if data_len + 6 != size or data_len < 6:
        return None
    pc = (frame[7] << 8) | frame[8]
    epc = frame[9 : 9 + data_len - 4]
    rssi, freq_ant, count = frame[7 + data_len], frame[8 + data_len], frame[9 + data_len]
    return _tag(freq_ant, pc, epc, rssi, ts, count)


def _reply_event(frame: bytes, ts: float) -> Event | None:
    address, cmd = frame[2], frame[3]
    if cmd in (CMD_REAL_TIME_INVENTORY, CMD_FAST_SWITCH_INVENTORY):
        return _inventory_event(frame, address, cmd, ts)
    if cmd in (CMD_GET_INVENTORY_BUFFER, CMD_GET_AND_RESET_INVENTORY_BUFFER):
        return _buffer_event(frame, address, cmd, ts)
    if cmd == CMD_INVENTORY and len(frame) == 14:
        return InventoryResult(address, frame[4] + 1, (frame[5] << 8) | frame[6],
                               (frame[7] << 8) | frame[8], int.from_bytes(frame[9:13], "big"))
    if len(frame) == 6 and cmd not in (CMD_GET_WORK_ANTENNA, CMD_GET_OUTPUT_POWER):
        return CommandResult(address, cmd, frame[4])
    return Response(address, cmd, frame[4:-1])


# --------------------------------------------------------------------------------------------------
# Stream decoders


EventT = TypeVar("EventT")


class _FrameDecoder(Generic[EventT]):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.stats = DecoderStats()
        self._buffer = bytearray()
        self._clock = clock

    def feed(self, chunk: bytes) -> list[EventT]:
        """Add bytes from the line; return every event completed by them. Never raises."""
        buf = self._buffer
        buf += chunk
        stats = self.stats
        ts = self._clock()
        events: list[EventT] = []
        pos = 0
        size = len(buf)
        while True:
            start = buf.find(HEAD, pos)
            if start < 0:
                stats.bytes_skipped += size - pos
                pos = size
                break
            stats.bytes_skipped += start - pos
            pos = start
            if size - start < 4:
                break
            length = buf[start + 1]
            if length < 3 or buf[start + 3] not in KNOWN_COMMANDS:
                stats.bytes_skipped += 1
                pos = start + 1
                continue
            end = start + length + 2
            if end > size:
                break
            frame = bytes(buf[start:end])
            if sum(frame) & 0xFF:
                stats.reject_checksum()
                pos = start + 1
                continue
            event = self._event(frame, ts)
            if event is None:
                stats.reject_payload()
                pos = start + 1  # a checksum passes by chance 1 in 256: do not trust its length
                continue
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

    def _event(self, frame: bytes, ts: float) -> EventT | None:
        raise NotImplementedError


class Decoder(_FrameDecoder[Event]):
    """Module -> host frames: tag records, round ends, results, other replies."""

    def _event(self, frame: bytes, ts: float) -> Event | None:
        return _reply_event(frame, ts)


class CommandDecoder(_FrameDecoder[Command]):
    """Host -> module frames (what the simulator receives)."""

    def _event(self, frame: bytes, ts: float) -> Command:
        return Command(frame[2], frame[3], frame[4:-1])
