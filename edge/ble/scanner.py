"""The thin bleak adapter: start a scanner, hand each advertisement on, survive the adapter.

``BleScanner.run()`` never raises into the agent (except cancellation). It scans passively where
BlueZ offers it (AdvertisementMonitor, BlueZ >= 5.56 with --experimental), actively otherwise;
restarts after errors with exponential back-off and when the adapter goes silent (BlueZ is known
to stop reporting after hours or days); and when there is no Bluetooth at all (no D-Bus, no
bluetoothd, no adapter) it logs ONE warning, sets ``status`` to "bluetooth unavailable: <reason>"
and retries quietly and slowly, so a dongle plugged in later is picked up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .advert import Advertisement, from_bleak

log = logging.getLogger("tenpo.edge.ble.scanner")

ScanMode = Literal["auto", "active", "passive"]
ScannerFactory = Callable[..., Any]  # BleakScanner or a stand-in: (callback, scanning_mode=, bluez=)

_START_TIMEOUT_S = 15.0  # habluetooth waits as long; BlueZ can be slow right after boot
_TRANSIENT_DBUS = ("InProgress", "NotReady", "Failed", "UnknownObject", "NoReply")


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 60.0
    unavailable_retry_s: float = 300.0  # how often to look again for Bluetooth that is not there

    def delay(self, attempt: int) -> float:
        return min(self.max_s, self.initial_s * self.factor ** max(0, attempt - 1))


@dataclass(frozen=True, slots=True)
class ScanError:
    kind: Literal["unavailable", "passive_unsupported", "transient"]
    reason: str


def classify_error(exc: BaseException) -> ScanError:
    """Decide what a start-up failure means: no Bluetooth here, no passive mode, or try again."""
    from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError, BleakError  # loaded only when a scan fails

    if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
        return ScanError("unavailable", "no D-Bus system bus, so BlueZ cannot be reached")
    if isinstance(exc, BleakBluetoothNotAvailableError):
        return ScanError("unavailable", str(exc).rstrip(".") or "no usable Bluetooth adapter")
    if isinstance(exc, BleakDBusError):
        name = exc.dbus_error or ""
        if name.endswith("ServiceUnknown"):
            return ScanError("unavailable", "bluetoothd is not running")
        if name.endswith("AccessDenied"):
            return ScanError("unavailable", "D-Bus refused access to BlueZ (permissions or AppArmor)")
        short = name.rsplit(".", 1)[-1] or "D-Bus error"
        if short in _TRANSIENT_DBUS:
            return ScanError("transient", f"adapter busy or resetting ({short})")
        return ScanError("transient", f"{short}: {exc.dbus_error_details or exc}")
    if isinstance(exc, BleakError):
        text = str(exc)
        if "passive" in text.lower():
            return ScanError("passive_unsupported", text)
        if "not found" in text:
            return ScanError("unavailable", text)
        return ScanError("transient", text)
    if isinstance(exc, TimeoutError):
        return ScanError("transient", f"the adapter did not start within {_START_TIMEOUT_S:.0f} s")
    return ScanError("transient", f"{type(exc).__name__}: {exc}")


def _scanner_arguments(mode: Literal["active", "passive"], adapter: str | None) -> dict[str, Any]:
    # bleak (and D-Bus) load only when a scan starts: `tenpo ble decode` and the tests do without them.
    from bleak.args.bluez import OrPattern
    from bleak.assigned_numbers import AdvertisementDataType

    bluez: dict[str, Any] = {"adapter": adapter} if adapter else {}
    if mode == "passive":
        # A monitor needs patterns; these flag values match nearly every advertiser (HA uses them).
        bluez["or_patterns"] = [OrPattern(0, AdvertisementDataType.FLAGS, bytes([f])) for f in (0x06, 0x1A, 0x02)]
    else:
        # DuplicateData clears stale manufacturer data; an RSSI filter lifts BlueZ's 8 dB
        # re-report threshold, so a phone standing still keeps being heard.
        bluez["filters"] = {"DuplicateData": True, "RSSI": -127}
    return {"scanning_mode": mode, "bluez": bluez}


class BleScanner:
    """Runs a bleak scanner and calls ``on_advertisement`` with each advertisement heard.

    Args:
        on_advertisement: called in the event loop for each advertisement; its exceptions are
            counted and logged, never passed to bleak.
        adapter: "hci0"-style name, or None for BlueZ's default.
        mode: "auto" tries passive then active; or force one.
        factory: the scanner class (BleakScanner; tests pass a stand-in).
        clock: wall clock for advertisement times.
        silence_restart_s: restart the scanner when nothing was heard for this long.
    """

    def __init__(
        self,
        on_advertisement: Callable[[Advertisement], None],
        *,
        adapter: str | None = None,
        mode: ScanMode = "auto",
        factory: ScannerFactory | None = None,
        clock: Callable[[], float] = time.time,
        backoff: Backoff = Backoff(),
        silence_restart_s: float = 120.0,
        logger: logging.Logger = log,
    ) -> None:
        self._on_advertisement = on_advertisement
        self._adapter = adapter
        self._mode: ScanMode = mode
        self._factory = factory
        self._clock = clock
        self._backoff = backoff
        self._silence_restart_s = silence_restart_s
        self._log = logger
        self._last_heard = time.monotonic()
        self._warned_unavailable = False
        self.status = "bluetooth starting"
        self.available: bool | None = None  # None until the first start attempt finishes
        self.adverts_seen = 0
        self.callback_errors = 0
        self.restarts = 0

    # --- the bleak callback -----------------------------------------------------------------

    def handle_detection(self, device: Any, data: Any) -> None:
        """bleak's detection callback: exactly (BLEDevice, AdvertisementData)."""
        self._last_heard = time.monotonic()
        try:
            self.adverts_seen += 1
            self._on_advertisement(from_bleak(device, data, self._clock()))
        except Exception:  # a bad advert or a consumer bug must not kill bleak's dispatch
            self.callback_errors += 1
            if self.callback_errors == 1:
                self._log.exception("advertisement handler failed (further failures only counted)")

    # --- the run loop -----------------------------------------------------------------------

    def _make(self, mode: Literal["active", "passive"]) -> Any:
        factory = self._factory
        if factory is None:
            from bleak import BleakScanner  # only when a real adapter is used (tests inject a factory)

            factory = BleakScanner
        return factory(self.handle_detection, **_scanner_arguments(mode, self._adapter))

    async def run(self, stop: asyncio.Event | None = None, *, give_up_when_unavailable: bool = False) -> str:
        """Scan until ``stop`` is set; returns the final status. Never raises except on cancel.

        With ``give_up_when_unavailable`` (the `tenpo ble scan` command) it returns as soon as it
        knows there is no Bluetooth, instead of looking again every few minutes.
        """
        stop = stop or asyncio.Event()
        mode: Literal["active", "passive"] = "active" if self._mode == "active" else "passive"
        failures = 0
        while not stop.is_set():
            try:
                scanner = self._make(mode)
                await asyncio.wait_for(scanner.start(), _START_TIMEOUT_S)
            except Exception as exc:  # every start failure is classified; cancellation passes
                error = classify_error(exc)
                if error.kind == "passive_unsupported" and mode == "passive" and self._mode == "auto":
                    self._log.info("passive scanning unavailable (%s); scanning actively", error.reason)
                    mode = "active"
                    continue
                if error.kind == "unavailable" or error.kind == "passive_unsupported":  # forced passive
                    self._unavailable(error.reason)
                    if give_up_when_unavailable:
                        return self.status
                    delay = self._backoff.unavailable_retry_s
                else:
                    failures += 1
                    delay = self._backoff.delay(failures)
                    self.status = f"bluetooth restarting: {error.reason}"
                    self._log.warning("bluetooth scanner failed to start (%s); retrying in %.0f s", error.reason, delay)
                if await _wait(stop, delay):
                    break
                continue
            failures = 0
            self._available(mode)
            try:
                silent = await self._watch(stop)
            finally:
                await _quietly_stop(scanner)
            if silent:
                self.restarts += 1
                self.status = "bluetooth restarting: no advertisements heard"
                # info, not warning: an empty shop at night is silent too, and restarts are counted
                self._log.info("no advertisements for %.0f s; restarting the bluetooth scanner", self._silence_restart_s)
        return self.status

    def _unavailable(self, reason: str) -> None:
        self.available = False
        self.status = f"bluetooth unavailable: {reason}"
        if not self._warned_unavailable:
            self._warned_unavailable = True
            self._log.warning("%s; beacon presence is off, everything else keeps running", self.status)

    def _available(self, mode: str) -> None:
        if self.available is False:
            self._log.warning("bluetooth is back")
        self.available = True
        self._warned_unavailable = False
        self.status = f"scanning ({mode}{f' on {self._adapter}' if self._adapter else ''})"
        self._log.info("bluetooth %s", self.status)

    async def _watch(self, stop: asyncio.Event) -> bool:
        """Wait for stop (False) or for the adapter to fall silent (True)."""
        self._last_heard = time.monotonic()
        check_every = max(0.05, self._silence_restart_s / 4)
        while not await _wait(stop, check_every):
            if time.monotonic() - self._last_heard >= self._silence_restart_s:
                return True
        return False


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """True if ``stop`` was set within ``seconds``."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return stop.is_set()
    return True


async def _quietly_stop(scanner: Any) -> None:
    try:
        await asyncio.wait_for(scanner.stop(), _START_TIMEOUT_S)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the adapter may already be gone; nothing useful to do
        log.debug("stopping the scanner failed: %s", exc)
