"""The systemd units and the agent's side of them: hardening scored by `systemd-analyze security`, and
sd_notify READY / WATCHDOG / STOPPING received on a real datagram socket from a real `tenpo edge run`,
with the pings stopping when the agent's event loop is blocked (so systemd would restart it)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenpo.sandbox import tenpo_command, write_store_config
from tenpo.shared import sd_notify

UNITS = Path(__file__).resolve().parent.parent / "systemd"
MAX_EXPOSURE = 2.0
WATCHDOG_USEC = 200_000  # pings every 0.1 s: a test sees many without waiting long


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file (keys repeat in units, e.g. SystemCallFilter=)."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def exposure(unit: Path) -> float:
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert found, result.stdout + result.stderr
    return float(found.group(1))


# ---------------------------------------------------------------------------- the unit files


@pytest.mark.parametrize("unit", ["tenpo-edge.service", "tenpo-cloud@.service"])
def test_agent_and_aggregator_are_hardened_to_2_or_lower(unit: str) -> None:
    assert exposure(UNITS / unit) <= MAX_EXPOSURE


def test_an_unhardened_unit_scores_worse_so_the_score_is_read(tmp_path: Path) -> None:
    # The same agent unit without its [Service] hardening: if parsing the score were broken, this would pass too.
    text = (UNITS / "tenpo-edge.service").read_text()
    bare = tmp_path / "tenpo-edge.service"
    bare.write_text(text.split("UMask=")[0] + "\n[Install]\nWantedBy=multi-user.target\n")
    assert exposure(bare) > 5.0


def test_edge_unit_is_notify_with_watchdog_restart_on_failure_and_serial_devices() -> None:
    edge = unit_settings(UNITS / "tenpo-edge.service")
    assert edge["Type"] == ["notify"] and edge["NotifyAccess"] == ["main"]
    assert int(edge["WatchdogSec"][0]) > 0
    assert edge["Restart"] == ["on-failure"]
    assert "char-ttyUSB rw" in edge["DeviceAllow"] and "char-ttyACM rw" in edge["DeviceAllow"]
    assert "AF_BLUETOOTH" in edge["RestrictAddressFamilies"][0].split()
    assert edge["UMask"] == ["0077"] and edge["ProtectSystem"] == ["strict"]
    assert edge["ReadWritePaths"] == ["/var/lib/tenpo"]


def test_every_unit_runs_as_tenpo_from_the_virtualenv() -> None:
    for path in sorted(UNITS.glob("*.service")):
        settings = unit_settings(path)
        assert settings["User"] == ["tenpo"], path.name
        assert settings["ExecStart"][0].startswith("/opt/tenpo/.venv/bin/tenpo "), path.name
        assert settings["NoNewPrivileges"] == ["true"] and settings["CapabilityBoundingSet"] == [""], path.name


# ---------------------------------------------------------------------------- sd_notify, pure parts


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_the_named_process() -> None:
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "41"}, pid=41) == 15.0
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "41"}, pid=42) is None
    assert sd_notify.watchdog_interval({}) is None
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_notify_without_a_socket_does_nothing() -> None:
    assert sd_notify.notify("READY=1", {}) is False
    assert sd_notify.notify("READY=1", {"NOTIFY_SOCKET": "relative/path"}) is False
    assert sd_notify.notify("READY=1", {"NOTIFY_SOCKET": "/nonexistent/notify"}) is False


# ---------------------------------------------------------------------------- a real agent


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace, as systemd hands out: (socket, NOTIFY_SOCKET value)."""
    name = f"tenpo-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    yield sock, "@" + name
    sock.close()


def receive(sock: socket.socket, timeout: float) -> str | None:
    sock.settimeout(timeout)
    try:
        return sock.recv(4096).decode()
    except TimeoutError:
        return None


def next_other_than_watchdog(sock: socket.socket) -> str:
    while (message := receive(sock, 60)) == "WATCHDOG=1":
        pass
    assert message is not None, "the agent went quiet"
    return message


def unit_environment(unit: str) -> dict[str, str]:
    """The Environment= lines of a unit, as the service would get them."""
    pairs = (word.partition("=") for line in unit_settings(UNITS / unit).get("Environment", []) for word in line.split())
    return {key: value for key, _, value in pairs}


def start_agent(tmp_path: Path, notify_address: str, **extra_env: str) -> subprocess.Popen[bytes]:
    config = write_store_config(tmp_path, "S001", "mqtt://127.0.0.1:1")  # no broker: READY does not wait for one
    unit_env = {key: value for key, value in unit_environment("tenpo-edge.service").items() if key != "TENPO_CONFIG"}
    env = {**os.environ, **unit_env, "NOTIFY_SOCKET": notify_address, "WATCHDOG_USEC": str(WATCHDOG_USEC), **extra_env}
    env.pop("WATCHDOG_PID", None)
    log = (tmp_path / "agent.log").open("wb")
    return subprocess.Popen(tenpo_command("edge", "run", "--config", str(config)), env=env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip


def test_agent_says_ready_pings_the_watchdog_and_says_stopping(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, address = notify_socket
    agent = start_agent(tmp_path, address)
    try:
        assert receive(sock, 60) == "READY=1", (tmp_path / "agent.log").read_text()
        assert (tmp_path / "S001.db").exists()  # the replica was open before READY
        pings = [receive(sock, 10) for _ in range(5)]
        assert pings == ["WATCHDOG=1"] * 5
        agent.send_signal(signal.SIGTERM)
        assert next_other_than_watchdog(sock) == "STOPPING=1"
        assert agent.wait(timeout=30) == 0
    finally:
        agent.kill()
        agent.wait()


def test_a_blocked_event_loop_stops_the_watchdog_pings(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, address = notify_socket
    agent = start_agent(tmp_path, address, **{sd_notify.TEST_BLOCK_LOOP_ENV: "0.5"})
    try:
        assert receive(sock, 60) == "READY=1", (tmp_path / "agent.log").read_text()
        assert receive(sock, 10) == "WATCHDOG=1"  # pinging while the loop runs
        assert next_other_than_watchdog(sock) == "STATUS=test: event loop blocked"
        # Ten ping intervals of silence: systemd's WatchdogSec (two intervals) would have killed it.
        assert receive(sock, 10 * WATCHDOG_USEC / 2 / 1e6) is None
        assert agent.poll() is None  # alive but wedged: exactly what only the watchdog catches
        agent.send_signal(signal.SIGABRT)  # what systemd does then (WatchdogSignal=)
        assert agent.wait(timeout=30) == -signal.SIGABRT
    finally:
        agent.kill()
        agent.wait()
    # With the unit's PYTHONFAULTHANDLER=1 the journal shows where the loop was stuck.
    log = (tmp_path / "agent.log").read_text()
    assert "Fatal Python error: Aborted" in log and 'in block' in log and "sd_notify.py" in log, log


async def test_watchdog_task_pings_while_the_loop_runs(notify_socket: tuple[socket.socket, str]) -> None:
    sock, address = notify_socket
    sock.setblocking(False)
    task = sd_notify.start_watchdog({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "20000"})
    assert task is not None
    loop = asyncio.get_running_loop()
    try:
        messages = [(await loop.sock_recv(sock, 64)).decode() for _ in range(3)]
    finally:
        task.cancel()
    assert messages == ["WATCHDOG=1"] * 3
    assert sd_notify.start_watchdog({"NOTIFY_SOCKET": address}) is None  # no WatchdogSec: no task
