"""The store TOML's ``[printer]`` section (firmware-config/store.example.toml documents it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenpo.edge.printer.escpos import DRAWER_PIN_2, DRAWER_PIN_5
from tenpo.shared.errors import ConfigError

USB_DEVICE_PREFIXES = ("/dev/usb/lp", "/dev/lp")  # the kernel's USB printer class (usblp) and parallel ports


@dataclass(frozen=True, slots=True)
class PrinterSettings:
    port: str  # a serial port (/dev/ttyUSB0, /dev/ttyS0) or a printer device file (/dev/usb/lp0)
    baudrate: int = 38400
    timeout_s: float = 2.0  # for the status reply and for each write
    check_status: bool = True  # serial only: ask for offline / paper out before printing
    drawer: bool = True  # open the cash drawer after a sale with a cash payment
    drawer_pin: int = DRAWER_PIN_2

    @property
    def device_file(self) -> bool:
        """A USB (usblp) or parallel printer: written like a file, no status replies."""
        return self.port.startswith(USB_DEVICE_PREFIXES)


def parse_printer(section: dict[str, Any], path: Path | str) -> PrinterSettings | None:
    """None when the section is absent or empty (receipts stay text only)."""
    if not section:
        return None

    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"{path}: printer.{key}: {why}")

    unknown = set(section) - set(PrinterSettings.__dataclass_fields__)
    if unknown:
        raise fail(sorted(unknown)[0], "unknown setting")
    port = section.get("port")
    if not isinstance(port, str) or not port.strip():
        raise fail("port", "required: the serial port or printer device, e.g. /dev/ttyUSB0 or /dev/usb/lp0")
    values: dict[str, Any] = {"port": port.strip()}
    for key, kind, expected in (("baudrate", int, "an integer"), ("timeout_s", (int, float), "a number"),
                                ("check_status", bool, "true or false"), ("drawer", bool, "true or false"),
                                ("drawer_pin", int, "an integer")):  # fmt: skip
        if key not in section:
            continue
        value = section[key]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise fail(key, f"{value!r} is not {expected}")
        values[key] = value
    if values.get("baudrate", 1) <= 0 or values.get("timeout_s", 1) <= 0:
        raise fail("baudrate" if values.get("baudrate", 1) <= 0 else "timeout_s", "must be above zero")
    if values.get("drawer_pin", DRAWER_PIN_2) not in (DRAWER_PIN_2, DRAWER_PIN_5):
        raise fail("drawer_pin", "0 (connector pin 2) or 1 (pin 5)")
    return PrinterSettings(**values)
