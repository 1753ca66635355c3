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
from collections.abc import Callable
from typing import Final

import serial

from tenpo.edge.rfid.driver import ReaderDriver, StreamDecoder
from tenpo.edge.rfid.profile import ReaderProfile
from tenpo.edge.rfid.reads import DecoderStats, TagRead
from tenpo.edge.rfid.registry import PROTOCOLS, driver_for, load_profile, profile_from_mapping

__all__ = [
    "PROTOCOLS",
    "ReaderConfigError",
    "ReaderConnection",
    "ReaderProfile",
    "load_profile",
    "profile_from_mapping",
]

log = logging.getLogger(__name__)

_READ_TIMEOUT: Final = 0.05  # serial read timeout: bounds stop() latency
_REPLY_TIMEOUT: Final = 1.0
_IDLE_FLUSH: Final = 0.1  # quiet line with a partial frame pending: the frame was cut


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
        self.driver: ReaderDriver = driver_for(profile.protocol)  # ConfigError for an unknown one
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
        log.warning("reader %s on %s: %s", self.profile.name, self.profile.port, self.last_error,
                    extra={"reader": self.profile.name})  # the journal field TENPO_READER

    def _close(self, port: serial.SerialBase) -> None:
        try:
            port.close()
        except (serial.SerialException, OSError):
            pass

    def _session(self, port: serial.SerialBase) -> None:
        driver, profile = self.driver, self.profile
        decoder = driver.decoder(profile)
        decoder.stats = self.stats
        self._configure(port, decoder)
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
                if driver.is_round_end(event):
                    last_round = now
                    port.write(driver.next_round(profile))
                self._dispatch(event)
            if driver.round_timeout_s is not None and now - last_round > driver.round_timeout_s:
                last_round = now  # a lost round end (noise): keep the inventory going
                port.write(driver.next_round(profile))
        farewell = driver.stop_command()
        if farewell:
            port.write(farewell)  # leave the module quiet

    def _dispatch(self, event: object) -> None:
        if isinstance(event, TagRead):
            self.on_read(event)
        elif self.on_event is not None:
            self.on_event(event)

    # -------------------------------------------------------------------------------- configure

    def _configure(self, port: serial.SerialBase, decoder: StreamDecoder) -> None:
        """Every step of the driver's configuration; a refused command ends the session."""
        driver = self.driver
        for step in driver.configuration(self.profile):
            port.write(step.command)
            if not step.awaits_reply:
                continue
            reply = self._await_reply(port, decoder, step.command)
            refusal = driver.refusal(step.command, reply)
            if refusal is not None:
                raise ReaderConfigError(refusal)

    def _await_reply(self, port: serial.SerialBase, decoder: StreamDecoder, command: bytes) -> object:
        """The reply to ``command``; tag reads and other events meanwhile are still delivered."""
        deadline = time.monotonic() + _REPLY_TIMEOUT
        while time.monotonic() < deadline and not self._stopping.is_set():
            for event in decoder.feed(port.read(port.in_waiting or 1)):
                if self.driver.answers(command, event):
                    return event
                self._dispatch(event)
        raise ReaderConfigError(f"no reply to command {command.hex(' ')}")
