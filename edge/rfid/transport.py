"""Serial transport: open a reader, configure it from its profile, deliver tag reads, survive unplugs.

``ReaderConnection`` runs one thread per reader. The port is anything pyserial's ``serial_for_url``
takes: a device path, ``socket://host:port`` or ``rfc2217://host:port``. When the port fails
(unplugged USB adapter, power-cycled module, dropped network bridge) it is closed and reopened with
exponential backoff; reads already delivered stay delivered, and the module is configured again,
since a power cycle forgets region, power and the running inventory.
"""

from __future__ import annotations

import logging
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import serial

from tenpo.edge.rfid import ascii_lines, mercury, r2000
from tenpo.edge.rfid.reads import DecoderStats, TagRead
from tenpo.shared.errors import ConfigError

log = logging.getLogger(__name__)

PROTOCOLS: Final = ("mercury", "r2000", "ascii")
_READ_TIMEOUT: Final = 0.05  # serial read timeout: bounds stop() latency
_REPLY_TIMEOUT: Final = 1.0
_IDLE_FLUSH: Final = 0.1  # quiet line with a partial frame pending: the frame was cut
_R2000_ROUND_TIMEOUT: Final = 2.0  # no round end for this long: ask again


@dataclass(frozen=True, slots=True)
class ReaderProfile:
    """One reader, as written in firmware-config/readers/*.toml (see docs/rfid.md)."""

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


def profile_from_mapping(data: dict, source: str = "profile") -> ReaderProfile:
    """Build a profile from the ``[reader]`` table of a TOML file; ConfigError names what is wrong."""
    reader = data.get("reader", data)
    try:
        protocol = str(reader["protocol"])
        port = str(reader["port"])
    except KeyError as exc:
        raise ConfigError(f"{source}: [reader] needs {exc.args[0]!r}") from None
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{source}: protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    region = reader.get("region")
    supported = {"mercury": mercury.REGIONS, "r2000": r2000.REGIONS}.get(protocol)
    if region is not None and supported is not None and str(region).upper() not in supported:
        # Caught here, not when the reader is configured: there it would stop the reader thread for good.
        raise ConfigError(f"{source}: region {region!r} is not one the {protocol} protocol knows "
                          f"({', '.join(sorted(supported))})")  # fmt: skip
    antennas = reader.get("antennas", {})
    try:
        powers = {int(k): float(v) for k, v in reader.get("tx_power_dbm", {}).items()}
        return ReaderProfile(
            port=port,
            protocol=protocol,
            name=str(reader.get("name", Path(source).stem)),
            baud=int(reader.get("baud", 115200)),
            region=reader.get("region"),
            tx_power_dbm=powers,
            door_antenna=int(antennas["door"]) if "door" in antennas else None,
            inside_antenna=int(antennas["inside"]) if "inside" in antennas else None,
            address=int(reader.get("address", r2000.BROADCAST)),
            epc_bits=tuple(int(b) for b in reader.get("epc_bits", ascii_lines.DEFAULT_EPC_BITS)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_profile(path: str | Path) -> ReaderProfile:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"reader profile {path}: {exc}") from None
    return profile_from_mapping(data, str(path))


def make_decoder(profile: ReaderProfile) -> mercury.Decoder | r2000.Decoder | ascii_lines.Decoder:
    if profile.protocol == "ascii":
        return ascii_lines.Decoder(epc_bits=profile.epc_bits)
    return mercury.Decoder() if profile.protocol == "mercury" else r2000.Decoder()


class ReaderConfigError(Exception):
    """The module refused a configuration command (bad region, power out of range...)."""


class ReaderConnection:
    """Reads one reader on a thread; ``on_read`` is called on that thread for every TagRead."""

    def __init__(
        self,
        profile: ReaderProfile,
        on_read: Callable[[TagRead], None],
        *,
        on_event: Callable[[object], None] | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
    ) -> None:
        self.profile = profile
        self.on_read = on_read
        self.on_event = on_event
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stats = DecoderStats()  # across reconnections
        self.connects = 0  # successful configurations
        self.failures = 0  # opens or sessions that failed
        self.last_error: str | None = None
        self.connected = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"rfid-{self.profile.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -------------------------------------------------------------------------------- session

    def _run(self) -> None:
        delay = self.backoff_initial
        while not self._stopping.is_set():
            try:
                port = serial.serial_for_url(
                    self.profile.port, baudrate=self.profile.baud, timeout=_READ_TIMEOUT
                )
            except (serial.SerialException, OSError, ValueError) as exc:
                self._failed(exc)
            else:
                try:
                    self._session(port)
                    delay = self.backoff_initial
                except (serial.SerialException, OSError, ReaderConfigError, TypeError) as exc:
                    # pyserial raises TypeError from read() when the fd vanished under it
                    self._failed(exc)
                    if self.connected.is_set():
                        delay = self.backoff_initial  # it worked until now: retry soon
                finally:
                    self.connected.clear()
                    self._close(port)
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, self.backoff_max)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("reader %s on %s: %s", self.profile.name, self.profile.port, self.last_error)

    def _close(self, port: serial.SerialBase) -> None:
        try:
            port.close()
        except (serial.SerialException, OSError):
            pass

    def _session(self, port: serial.SerialBase) -> None:
        decoder = make_decoder(self.profile)
        decoder.stats = self.stats
        self._decoder = decoder
        self._port = port
        self._configure()
        self.connects += 1
        self.connected.set()
        last_data = last_round = time.monotonic()
        while not self._stopping.is_set():
            data = port.read(port.in_waiting or 1)
            now = time.monotonic()
            if data:
                last_data = now
                events = decoder.feed(data)
            elif now - last_data > _IDLE_FLUSH:
                events = decoder.idle()
            else:
                events = []
            for event in events:
                if isinstance(event, r2000.RoundEnd):
                    last_round = now
                    port.write(self._r2000_inventory_command())
                self._dispatch(event)
            if self.profile.protocol == "r2000" and now - last_round > _R2000_ROUND_TIMEOUT:
                last_round = now  # a lost round end (noise): keep the inventory going
                port.write(self._r2000_inventory_command())
        if self.profile.protocol == "mercury":
            port.write(mercury.cmd_stop_continuous_read())  # leave the module quiet

    def _dispatch(self, event: object) -> None:
        if isinstance(event, TagRead):
            self.on_read(event)
        elif self.on_event is not None:
            self.on_event(event)

    # -------------------------------------------------------------------------------- configure

    def _request(self, command: bytes, matches: Callable[[object], bool]) -> object:
        """Send a command, wait for its reply; tag reads meanwhile are still delivered."""
        self._port.write(command)
        deadline = time.monotonic() + _REPLY_TIMEOUT
        while time.monotonic() < deadline and not self._stopping.is_set():
            for event in self._decoder.feed(self._port.read(self._port.in_waiting or 1)):
                if matches(event):
                    return event
                self._dispatch(event)
        raise ReaderConfigError(f"no reply to command {command.hex(' ')}")

    def _configure(self) -> None:
        if self.profile.protocol == "mercury":
            self._configure_mercury()
        elif self.profile.protocol == "r2000":
            self._configure_r2000()

    def _mercury(self, command: bytes) -> object:
        opcode = command[2]
        reply = self._request(
            command,
            lambda e: isinstance(e, (mercury.Response, mercury.ReaderError)) and e.opcode == opcode,
        )
        if isinstance(reply, mercury.ReaderError):
            raise ReaderConfigError(f"command 0x{opcode:02X} refused: {reply.name}")
        return reply

    def _configure_mercury(self) -> None:
        p = self.profile
        self._port.write(mercury.cmd_stop_continuous_read())  # in case it still streams
        self._mercury(mercury.cmd_get_version())
        if p.region:
            self._mercury(mercury.cmd_set_region(p.region))
        self._mercury(mercury.cmd_set_tag_protocol())
        if p.tx_power_dbm:
            # The M6E Nano has one port; with several listed the strongest setting is used.
            self._mercury(mercury.cmd_set_read_power(max(p.tx_power_dbm.values())))
        self._mercury(mercury.cmd_set_read_filter(False))
        self._mercury(mercury.cmd_start_continuous_read())

    def _r2000(self, command: bytes) -> object:
        cmd = command[3]
        reply = self._request(
            command,
            lambda e: isinstance(e, (r2000.CommandResult, r2000.Response)) and e.cmd == cmd,
        )
        if isinstance(reply, r2000.CommandResult) and not reply.ok:
            raise ReaderConfigError(f"command 0x{cmd:02X} refused: {reply.name}")
        return reply

    def _configure_r2000(self) -> None:
        p = self.profile
        self._r2000(r2000.cmd_get_firmware_version(p.address))
        if p.region:
            self._r2000(r2000.cmd_set_frequency_region(p.region, p.address))
        if p.tx_power_dbm:
            powers = [round(p.tx_power_dbm.get(port, 0)) for port in range(1, 5)]
            self._r2000(r2000.cmd_set_output_power(powers, p.address))
        if len(p.antennas) == 1:
            self._r2000(r2000.cmd_set_work_antenna(p.antennas[0], p.address))
        self._port.write(self._r2000_inventory_command())

    def _r2000_inventory_command(self) -> bytes:
        p = self.profile
        if len(p.antennas) > 1:
            return r2000.cmd_fast_switch_inventory([(a, 1) for a in p.antennas], 0, 1, p.address)
        return r2000.cmd_real_time_inventory(1, p.address)
