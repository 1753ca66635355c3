"""Values shared by the three reader protocols: a tag read and the decoder's counters."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import msgspec


class TagRead(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One sighting of a tag by one antenna.

    ``ts`` is host time (seconds since the epoch) when the bytes arrived; reader clocks are
    relative and drift, so they are kept only as extras (``reader_ms``).
    """

    epc: str  # upper-case hex
    rssi: int | None  # dBm; None only from ASCII readers that do not report it
    antenna: int  # 1-based port number, as printed on the reader
    ts: float
    protocol: str = ""  # "mercury", "r2000" or "ascii"
    read_count: int = 1  # times the reader saw the tag in this report
    frequency_khz: int | None = None
    phase: int | None = None  # degrees (Mercury)
    pc: int | None = None  # Gen2 protocol-control word
    reader_ms: int | None = None  # reader's own timestamp, ms (Mercury: since the last keep-alive)

    def to_dict(self) -> dict[str, object]:
        fields: dict[str, object] = msgspec.to_builtins(self)
        return fields


@dataclass(slots=True)
class DecoderStats:
    """Counters a stream decoder keeps; bad input is counted here instead of raised.

    ``frames_rejected`` is the sum of the three reasons below it.
    """

    frames_ok: int = 0
    frames_rejected: int = 0
    bad_checksum: int = 0  # CRC or checksum mismatch
    bad_length: int = 0  # impossible length field
    bad_payload: int = 0  # framing fine, contents unparseable
    bytes_skipped: int = 0  # garbage between frames (line noise, cut frames, boot chatter)

    def reject_checksum(self) -> None:
        self.frames_rejected += 1
        self.bad_checksum += 1

    def reject_length(self) -> None:
        self.frames_rejected += 1
        self.bad_length += 1

    def reject_payload(self) -> None:
        self.frames_rejected += 1
        self.bad_payload += 1

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
