"""The reader protocols Tenpo speaks, by name, and reader profiles checked against them.

A new protocol is registered by adding its driver to ``DRIVERS``; the transport, the simulator,
``tenpo rfid`` and profile loading pick it up from here.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Final

from tenpo.edge.rfid import ascii_lines, r2000
from tenpo.edge.rfid.ascii_driver import AsciiDriver
from tenpo.edge.rfid.driver import ReaderDriver
from tenpo.edge.rfid.mercury_driver import MercuryDriver
from tenpo.edge.rfid.profile import ReaderProfile
from tenpo.edge.rfid.r2000_driver import R2000Driver
from tenpo.shared.errors import ConfigError

DRIVERS: Final[dict[str, ReaderDriver]] = {
    driver.name: driver for driver in (MercuryDriver(), R2000Driver(), AsciiDriver())
}
PROTOCOLS: Final = tuple(DRIVERS)


def driver_for(protocol: str) -> ReaderDriver:
    driver = DRIVERS.get(protocol)
    if driver is None:
        raise ConfigError(f"protocol must be one of {', '.join(DRIVERS)}, not {protocol!r}")
    return driver


def profile_from_mapping(data: dict[str, Any], source: str = "profile") -> ReaderProfile:
    """Build a profile from the ``[reader]`` table of a TOML file; ConfigError names what is wrong."""
    reader = data.get("reader", data)
    if not isinstance(reader, dict):
        raise ConfigError(f"{source}: [reader] must be a table")
    try:
        protocol = str(reader["protocol"])
        port = str(reader["port"])
    except KeyError as exc:
        raise ConfigError(f"{source}: [reader] needs {exc.args[0]!r}") from None
    try:
        driver = driver_for(protocol)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    region = reader.get("region")
    if region is not None and driver.regions is not None and str(region).upper() not in driver.regions:
        # Caught here, not when the reader is configured: there it would stop the reader thread for good.
        raise ConfigError(f"{source}: region {region!r} is not one the {protocol} protocol knows "
                          f"({', '.join(sorted(driver.regions))})")  # fmt: skip
    antennas = reader.get("antennas", {})
    try:
        powers = {int(k): float(v) for k, v in reader.get("tx_power_dbm", {}).items()}
        return ReaderProfile(
            port=port,
            protocol=protocol,
            name=str(reader.get("name", Path(source).stem)),
            baud=int(reader.get("baud", 115200)),
            region=region,
            tx_power_dbm=powers,
            door_antenna=int(antennas["door"]) if "door" in antennas else None,
            inside_antenna=int(antennas["inside"]) if "inside" in antennas else None,
            address=int(reader.get("address", r2000.BROADCAST)),
            epc_bits=tuple(int(b) for b in reader.get("epc_bits", ascii_lines.DEFAULT_EPC_BITS)),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_profile(path: str | Path) -> ReaderProfile:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"reader profile {path}: {exc}") from None
    return profile_from_mapping(data, str(path))
