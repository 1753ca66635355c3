"""A reader as the store configures it: the ``[reader]`` table of firmware-config/readers/*.toml.

A plain value; ``registry.load_profile`` reads and checks one against the protocol's driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tenpo.edge.rfid import ascii_lines, r2000


@dataclass(frozen=True, slots=True)
class ReaderProfile:
    """One reader (see docs/rfid.md, "Writing a reader profile")."""

    port: str
    protocol: str
    name: str = "reader"
    baud: int = 115200
    region: str | None = None
    tx_power_dbm: dict[int, float] = field(default_factory=dict)  # antenna -> dBm
    door_antenna: int | None = None
    inside_antenna: int | None = None
    address: int = r2000.BROADCAST  # R2000 module address
    epc_bits: tuple[int, ...] | None = ascii_lines.DEFAULT_EPC_BITS  # ascii: EPC sizes accepted

    @property
    def antennas(self) -> tuple[int, ...]:
        ports = set(self.tx_power_dbm) | {a for a in (self.door_antenna, self.inside_antenna) if a}
        return tuple(sorted(ports)) or (1,)
