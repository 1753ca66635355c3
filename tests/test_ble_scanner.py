"""The bleak adapter, driven with bleak's own BLEDevice/AdvertisementData and stand-in scanners."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason, BleakDBusError, BleakError

from tenpo.edge.ble.advert import Advertisement
from tenpo.edge.ble.scanner import Backoff, BleScanner, classify_error

FAST = Backoff(initial_s=0.001, max_s=0.001, unavailable_retry_s=0.001)
IBEACON = bytes.fromhex("0215426c7565436861726d426561636f6e730efe1355c5")  # ibeacon-ble BlueCharm


def bleak_advert(rssi: int = -60) -> tuple[BLEDevice, AdvertisementData]:
    device = BLEDevice("C4:7C:8D:6A:11:22", "BlueCharm_177999", details=None)
    data = AdvertisementData(
        local_name="BlueCharm_177999",
        manufacturer_data={76: IBEACON},
        service_data={"0000feaa-0000-1000-8000-00805f9b34fb": bytes.fromhex("30e34549445f74657374")},
        service_uuids=["0000feaa-0000-1000-8000-00805f9b34fb"],
        tx_power=None,
        rssi=rssi,
        platform_data=("/org/bluez/hci0/dev_C4_7C_8D_6A_11_22", {}),
    )
    return device, data


def test_detection_callback_turns_bleak_objects_into_advertisements() -> None:
    heard: list[Advertisement] = []
    scanner = BleScanner(heard.append, clock=lambda: 1234.5)
    scanner.handle_detection(*bleak_advert())
    assert heard == [
        Advertisement(
            t=1234.5,
            address="C4:7C:8D:6A:11:22",
            rssi=-60,
            local_name="BlueCharm_177999",
            manufacturer_data={76: IBEACON},
            service_data={"0000feaa-0000-1000-8000-00805f9b34fb": bytes.fromhex("30e34549445f74657374")},
            service_uuids=("0000feaa-0000-1000-8000-00805f9b34fb",),
            tx_power=None,
        )
    ]


def test_a_failing_consumer_never_raises_into_bleak(caplog: pytest.LogCaptureFixture) -> None:
    def broken(adv: Advertisement) -> None:
        raise RuntimeError("bug downstream")

    scanner = BleScanner(broken)
    for _ in range(3):
        scanner.handle_detection(*bleak_advert())
    assert scanner.callback_errors == 3
    assert len([r for r in caplog.records if "handler failed" in r.message]) == 1


async def test_no_bluetooth_on_this_machine_gives_one_clear_status(caplog: pytest.LogCaptureFixture) -> None:
    # The real BleakScanner: this machine has no D-Bus system bus and no adapter.
    caplog.set_level(logging.WARNING)
    scanner = BleScanner(lambda adv: None)
    status = await scanner.run(give_up_when_unavailable=True)
    assert status.startswith("bluetooth unavailable: ")
    assert scanner.available is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "bluetooth unavailable" in warnings[0].getMessage()


class FakeScanner:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def start(self) -> None:
        self.log.append("start")

    async def stop(self) -> None:
        self.log.append("stop")


class ScriptedFactory:
    """Stands in for BleakScanner: raises the scripted errors in turn, then starts fine."""

    def __init__(self, errors: list[BaseException | None], wanted_calls: int) -> None:
        self.errors = errors
        self.calls: list[dict[str, Any]] = []
        self.log: list[str] = []
        self.reached = asyncio.Event()
        self.wanted_calls = wanted_calls

    def __call__(self, callback: Any, **kwargs: Any) -> FakeScanner:
        self.calls.append(kwargs)
        if len(self.calls) >= self.wanted_calls:
            self.reached.set()
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        return FakeScanner(self.log)


async def run_until(scanner: BleScanner, factory: ScriptedFactory) -> str:
    stop = asyncio.Event()
    task = asyncio.create_task(scanner.run(stop))
    await asyncio.wait_for(factory.reached.wait(), 5)
    await asyncio.sleep(0)  # let the last start attempt finish
    stop.set()
    return await asyncio.wait_for(task, 5)


async def test_agent_keeps_looking_for_bluetooth_but_warns_only_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    factory = ScriptedFactory([FileNotFoundError(2, "No such file or directory")] * 10, wanted_calls=6)
    scanner = BleScanner(lambda adv: None, factory=factory, backoff=FAST)
    status = await run_until(scanner, factory)
    assert len(factory.calls) >= 6
    assert status == "bluetooth unavailable: no D-Bus system bus, so BlueZ cannot be reached"
    assert len(caplog.records) == 1


async def test_restarts_after_adapter_errors_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    busy = BleakDBusError("org.bluez.Error.InProgress", ["Operation already in progress"])
    factory = ScriptedFactory([busy, busy, None], wanted_calls=3)
    scanner = BleScanner(lambda adv: None, factory=factory, mode="active", backoff=FAST)
    status = await run_until(scanner, factory)
    assert status == "scanning (active)"
    assert factory.log == ["start", "stop"]
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2 and "InProgress" in retries[0]


async def test_auto_mode_falls_back_to_active_when_passive_is_unsupported() -> None:
    no_monitor = BleakError(
        "passive scanning on Linux requires BlueZ >= 5.56 with --experimental enabled and Linux kernel >= 5.10"
    )
    factory = ScriptedFactory([no_monitor, None], wanted_calls=2)
    scanner = BleScanner(lambda adv: None, factory=factory, adapter="hci1", backoff=FAST)
    status = await run_until(scanner, factory)
    assert [c["scanning_mode"] for c in factory.calls] == ["passive", "active"]
    assert factory.calls[0]["bluez"]["or_patterns"]  # passive needs BlueZ monitor patterns
    assert factory.calls[1]["bluez"]["filters"]["DuplicateData"] is True
    assert all(c["bluez"]["adapter"] == "hci1" for c in factory.calls)
    assert status == "scanning (active on hci1)"


async def test_forced_passive_mode_without_support_is_reported_as_unavailable() -> None:
    factory = ScriptedFactory([BleakError("passive scanning mode requires bluez or_patterns")], wanted_calls=1)
    scanner = BleScanner(lambda adv: None, factory=factory, mode="passive", backoff=FAST)
    status = await scanner.run(give_up_when_unavailable=True)
    assert status == "bluetooth unavailable: passive scanning mode requires bluez or_patterns"


async def test_silent_adapter_is_restarted() -> None:
    factory = ScriptedFactory([], wanted_calls=2)
    scanner = BleScanner(lambda adv: None, factory=factory, silence_restart_s=0.05, backoff=FAST)
    await run_until(scanner, factory)
    assert scanner.restarts >= 1
    assert factory.log[:3] == ["start", "stop", "start"]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (FileNotFoundError(2, "No such file or directory"), "unavailable"),
        (
            BleakBluetoothNotAvailableError(
                "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH
            ),
            "unavailable",
        ),
        (BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", []), "unavailable"),
        (BleakDBusError("org.freedesktop.DBus.Error.AccessDenied", []), "unavailable"),
        (BleakError("adapter 'hci1' not found"), "unavailable"),
        (BleakDBusError("org.bluez.Error.NotReady", []), "transient"),
        (BleakError("passive scanning mode requires bluez or_patterns"), "passive_unsupported"),
        (TimeoutError(), "transient"),
        (OSError("weird"), "transient"),
    ],
)
def test_start_errors_are_classified(error: BaseException, kind: str) -> None:
    assert classify_error(error).kind == kind
