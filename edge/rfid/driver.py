"""What a reader protocol is to the transport and the simulator: one driver object per protocol.

Neither the transport (serial port, reconnects) nor the simulator (a module behind a PTY) names a
protocol: they ask the profile's driver, found in ``registry``. A driver is pure. It makes the
stream decoder, lists the configuration commands and recognises their replies, says how the module
reports tags (a stream it starts once, or rounds the host asks for one after another) and builds a
``SimulatedModule`` that answers host bytes as the real module does. Adding a protocol is a codec
module, a driver module (with their tests) and one line in ``registry``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from tenpo.edge.rfid.profile import ReaderProfile
from tenpo.edge.rfid.reads import DecoderStats


class StreamDecoder(Protocol):
    """What every codec's ``Decoder`` offers: bytes in, events out, bad input counted, never raised."""

    stats: DecoderStats

    def feed(self, chunk: bytes) -> list[Any]: ...

    def idle(self) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class Exchange:
    """One configuration command. With ``awaits_reply`` the transport waits for the reply the
    driver recognises (``answers``) and stops on a refusal; without it the bytes are only sent."""

    command: bytes
    awaits_reply: bool = True


class HostCommand(NamedTuple):
    """A command a simulated module received, and the bytes it answered with (b"" for none)."""

    code: int  # opcode or command byte, as the protocol numbers its commands
    data: bytes
    reply: bytes


class SimulatedModule(ABC):
    """The module's side of the line for one power-up: host bytes in, module bytes out, the time
    passed in. The simulator owns the PTY, the tags, the read rate and the line noise."""

    @abstractmethod
    def on_host_bytes(self, data: bytes, now: float) -> list[HostCommand]:
        """Every command completed by ``data``, with the module's answer to each."""

    @abstractmethod
    def reads_wanted(self) -> int | None:
        """Tag reports the module would send now: None for as many as the rate allows, 0 for none
        (not reading yet, or between two inventory rounds)."""

    @abstractmethod
    def tag_report(self, epc: str, antenna: int, rssi: int, now: float) -> bytes:
        """The bytes reporting one read of ``epc`` (hex)."""

    def after_reads(self, now: float) -> bytes:
        """Bytes due once this tick's reads are out (a round summary, a keep-alive)."""
        return b""


class ReaderDriver(ABC):
    """One reader protocol. Subclasses set ``name`` and implement what their module needs."""

    name: str
    regions: frozenset[str] | None = None  # region names a profile may set; None: not checked
    # Round-based modules read one inventory round per command: the host asks for the next at each
    # round end, and again after this many seconds without one (a round end lost to noise).
    round_timeout_s: float | None = None

    @abstractmethod
    def decoder(self, profile: ReaderProfile) -> StreamDecoder:
        """A fresh decoder for the module's frames (one per session)."""

    def configuration(self, profile: ReaderProfile) -> list[Exchange]:
        """Commands that set the module up and start it reading, in order, after every power-up."""
        return []

    def answers(self, command: bytes, event: object) -> bool:
        """Whether ``event`` is the module's reply to ``command``."""
        return False

    def refusal(self, command: bytes, reply: object) -> str | None:
        """Why the module refused ``command`` (one line), or None when it accepted it."""
        return None

    def is_round_end(self, event: object) -> bool:
        return False

    def next_round(self, profile: ReaderProfile) -> bytes:
        """The command asking a round-based module for its next inventory round."""
        return b""

    def stop_command(self) -> bytes:
        """Sent when the transport stops, to leave the module quiet (b"" for nothing)."""
        return b""

    @abstractmethod
    def simulated_module(self, tag_count: int, rate: float) -> SimulatedModule:
        """The module as just powered up, for the simulator (``rate``: reads per second)."""
