"""Plain ASCII line readers as a driver: nothing to configure, they stream from power-on."""

from __future__ import annotations

from tenpo.edge.rfid import ascii_lines
from tenpo.edge.rfid.driver import HostCommand, ReaderDriver, SimulatedModule
from tenpo.edge.rfid.profile import ReaderProfile
from tenpo.edge.rfid.reads import TagRead


class AsciiDriver(ReaderDriver):
    name = "ascii"

    def decoder(self, profile: ReaderProfile) -> ascii_lines.Decoder:
        # No checksum: the EPC sizes the profile expects are the only guard against cut lines.
        return ascii_lines.Decoder(epc_bits=profile.epc_bits)

    def simulated_module(self, tag_count: int, rate: float) -> SimulatedAscii:
        return SimulatedAscii()


class SimulatedAscii(SimulatedModule):
    def on_host_bytes(self, data: bytes, now: float) -> list[HostCommand]:
        return []  # such readers take no commands

    def reads_wanted(self) -> None:
        return None

    def tag_report(self, epc: str, antenna: int, rssi: int, now: float) -> bytes:
        return ascii_lines.format_line(TagRead(epc, rssi, antenna, 0.0))
