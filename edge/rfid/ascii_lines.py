"""Plain ASCII line readers (keyboard-wedge style): one EPC in hex per line, optionally ``EPC,ANTENNA,RSSI``.

Lines end in LF, CR LF or CR. The format has no checksum: a line cut by noise runs into the next
one and looks like a longer EPC, so the decoder accepts only the EPC sizes it is told to expect
(96 and 128 bits unless the reader profile says otherwise). Such readers report no RSSI unless the three-field form is used; the
TagRead then carries ``rssi=None`` so that nothing downstream mistakes "unknown" for a strong read.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Final

from tenpo.edge.rfid.reads import DecoderStats, TagRead

DEFAULT_EPC_BITS: Final = (96, 128)
MAX_LINE: Final = 256  # longer than any EPC line: the stream is not ASCII lines
_LINE_END: Final = re.compile(rb"\r\n|\r|\n")
_EPC: Final = re.compile(r"(?:[0-9A-Fa-f]{2}){2,62}")  # 16 .. 496 bits, whole bytes


def parse_line(line: str, ts: float) -> TagRead | None:
    """``EPC`` or ``EPC,ANTENNA,RSSI`` (spaces around fields allowed); None when it is neither."""
    fields = [field.strip() for field in line.split(",")]
    if len(fields) not in (1, 3) or not _EPC.fullmatch(fields[0]):
        return None
    if len(fields) == 1:
        return TagRead(fields[0].upper(), None, 1, ts, "ascii")
    try:
        antenna, rssi = int(fields[1]), int(fields[2])
    except ValueError:
        return None
    if not 1 <= antenna <= 64 or not -128 <= rssi <= 20:
        return None
    return TagRead(fields[0].upper(), rssi, antenna, ts, "ascii")


def format_line(read: TagRead, with_metadata: bool = True) -> bytes:
    """The line a reader would send for this read (the simulator's side)."""
    if with_metadata and read.rssi is not None:
        return f"{read.epc},{read.antenna},{read.rssi}\r\n".encode()
    return f"{read.epc}\r\n".encode()


class Decoder:
    """Incremental line decoder. Never raises; blank lines are ignored, bad lines counted."""

    def __init__(
        self, clock: Callable[[], float] = time.time, epc_bits: Iterable[int] | None = DEFAULT_EPC_BITS
    ) -> None:
        """``epc_bits``: EPC sizes to accept; None accepts any whole number of bytes."""
        self._hex_lengths = None if epc_bits is None else frozenset(bits // 4 for bits in epc_bits)
        self.stats = DecoderStats()
        self._buffer = bytearray()
        self._clock = clock

    def feed(self, chunk: bytes) -> list[TagRead]:
        self._buffer += chunk
        parts = _LINE_END.split(self._buffer)
        rest = parts.pop()  # a CR LF cut after the CR leaves an empty line, which is ignored
        ts = self._clock()
        reads: list[TagRead] = []
        for raw in parts:
            self._line(raw, ts, reads)
        if len(rest) > MAX_LINE:
            self.stats.reject_length()
            self.stats.bytes_skipped += len(rest)
            rest = b""
        self._buffer = bytearray(rest)
        return reads

    def idle(self) -> list[TagRead]:
        """The line went quiet: a pending line without its end was cut (a truncated EPC would
        look like a real, unexpected tag), so it is counted and dropped."""
        if self._buffer.strip():
            self.stats.reject_length()
            self.stats.bytes_skipped += len(self._buffer)
        self._buffer.clear()
        return []

    def _line(self, raw: bytes, ts: float, reads: list[TagRead]) -> None:
        if not raw.strip():
            return
        if len(raw) > MAX_LINE:
            self.stats.reject_length()
            return
        try:
            read = parse_line(raw.decode("ascii"), ts)
        except UnicodeDecodeError:
            read = None
        if read is None or (self._hex_lengths is not None and len(read.epc) not in self._hex_lengths):
            self.stats.reject_payload()
        else:
            self.stats.frames_ok += 1
            reads.append(read)
