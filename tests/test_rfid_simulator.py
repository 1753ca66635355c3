"""Simulator and transport through real pseudo-terminals, including unplug and re-plug mid-session."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import serial

from tenpo.cli import main
from tenpo.edge.rfid import mercury
from tenpo.edge.rfid.reads import TagRead
from tenpo.edge.rfid.simulator import ReaderSimulator, SimTag, default_tags, parse_tags
from tenpo.edge.rfid.transport import ReaderConnection, ReaderProfile, load_profile
from tenpo.shared.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
PROTOCOLS = ["mercury", "r2000", "ascii"]
pytestmark = pytest.mark.timeout(30)


class Collector:
    """on_read callback that lets a test wait for a number of reads without sleeping."""

    def __init__(self) -> None:
        self.reads: list[TagRead] = []
        self._cond = threading.Condition()

    def __call__(self, read: TagRead) -> None:
        with self._cond:
            self.reads.append(read)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[TagRead]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.reads) >= count, timeout), (
                f"only {len(self.reads)} of {count} reads"
            )
            return list(self.reads)


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "reader"  # a stable name, like /dev/serial/by-id/...


def test_simulator_answers_configuration_like_the_module() -> None:
    with ReaderSimulator("mercury", rate=10) as sim:
        port = serial.serial_for_url(sim.path, baudrate=115200, timeout=1)
        decoder = mercury.Decoder()
        port.write(mercury.cmd_get_version() + mercury.cmd_set_region(0x42)
                   + mercury.cmd_set_read_power(30.0) + mercury.cmd_set_region("JP"))
        events: list = []
        while len(events) < 4:
            events += decoder.feed(port.read(port.in_waiting or 1))
        port.close()
    version, bad_region, too_strong, ok = events
    assert mercury.parse_version(version.data).hardware == "30.00.00.02"  # logged M6E Nano reply
    assert bad_region.name == "unsupported region"
    assert too_strong.name == "TX power too high"
    assert ok == mercury.Response(mercury.OP_SET_REGION, b"")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reads_survive_unplug_and_replug(protocol: str, link: Path) -> None:
    tags = default_tags(5)
    with ReaderSimulator(protocol, tags, rate=200, link=link) as sim:
        collector = Collector()
        profile = ReaderProfile(port=str(link), protocol=protocol, tx_power_dbm={1: 20})
        connection = ReaderConnection(profile, collector, backoff_initial=0.02, backoff_max=0.2)
        connection.start()
        try:
            before = collector.wait_for(20)
            sim.unplug()
            assert not link.exists()
            wait_until(lambda: connection.failures >= 1)
            assert sim.replug() == str(link) and link.exists()
            wait_until(lambda: connection.connects == 2)
            after = collector.wait_for(len(before) + 20)
        finally:
            started = time.monotonic()
            connection.stop()
            assert time.monotonic() - started < 1.0
    assert after[: len(before)] == before  # nothing delivered is lost or replaced
    assert {r.epc for r in after} == {t.epc for t in tags}
    assert all(r.protocol == protocol for r in after)
    if protocol != "ascii":  # the module was configured twice: once per power-up
        power_commands = [c for c in sim.counters.commands if c[0] in (0x92, 0x76)]
        assert len(power_commands) == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_line_noise_and_cut_frames_are_counted_not_delivered(protocol: str) -> None:
    tags = default_tags(6)
    with ReaderSimulator(protocol, tags, rate=400, noise=0.1, seed=7) as sim:
        collector = Collector()
        # ascii has no checksum: a cut line that runs into the next is caught only by its size,
        # so this reader is told its tags are all 96-bit.
        profile = ReaderProfile(port=sim.path, protocol=protocol, epc_bits=(96,))
        connection = ReaderConnection(profile, collector)
        connection.start()
        try:
            reads = collector.wait_for(150, timeout=10)
            wait_until(lambda: connection.stats.frames_rejected + connection.stats.bytes_skipped > 0)
        finally:
            connection.stop()
    assert {r.epc for r in reads} <= {t.epc for t in tags}
    assert sim.counters.noise_bursts + sim.counters.cut_frames > 0


def test_refused_configuration_keeps_retrying_without_crashing() -> None:
    with ReaderSimulator("mercury") as sim:
        profile = ReaderProfile(port=sim.path, protocol="mercury", tx_power_dbm={1: 31.5})
        connection = ReaderConnection(profile, Collector(), backoff_initial=0.01, backoff_max=0.05)
        connection.start()
        try:
            wait_until(lambda: connection.failures >= 2)
        finally:
            connection.stop()
    assert "TX power too high" in (connection.last_error or "")
    assert connection.connects == 0


def test_a_missing_port_is_retried_until_it_appears(link: Path) -> None:
    collector = Collector()
    connection = ReaderConnection(ReaderProfile(port=str(link), protocol="ascii"), collector,
                                  backoff_initial=0.01, backoff_max=0.05)
    connection.start()
    try:
        wait_until(lambda: connection.failures >= 2)
        with ReaderSimulator("ascii", rate=100, link=link):
            collector.wait_for(5)
    finally:
        connection.stop()


def test_tags_file_format() -> None:
    tags = parse_tags(["# delivery 42", "3074257BF7194E4000001A85", "", "E2001026760E0179,2,-61"])
    assert tags == [SimTag("3074257BF7194E4000001A85"), SimTag("E2001026760E0179", 2, -61)]
    with pytest.raises(ValueError, match="line 2"):
        parse_tags(["596F596F", "not an epc"])


def test_reader_profiles_in_firmware_config() -> None:
    profiles = {p.stem: load_profile(p) for p in (REPO / "firmware-config" / "readers").glob("*.toml")}
    dock = profiles["yr903"]
    assert (dock.protocol, dock.door_antenna, dock.inside_antenna) == ("r2000", 1, 2)
    assert dock.antennas == (1, 2) and dock.tx_power_dbm[1] == 30
    assert profiles["m6e-nano"].region == "JP"
    assert profiles["ascii-wedge"].protocol == "ascii"


def test_bad_profile_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[reader]\nprotocol = "llrp"\nport = "/dev/x"\n')
    with pytest.raises(ConfigError, match="protocol must be one of"):
        load_profile(path)
    path.write_text('[reader]\nprotocol = "ascii"\n')
    with pytest.raises(ConfigError, match="'port'"):
        load_profile(path)


def test_cli_listen_json(capsys: pytest.CaptureFixture[str]) -> None:
    with ReaderSimulator("mercury", default_tags(3), rate=100, max_reads=30) as sim:
        assert main(["rfid", "listen", "--port", sim.path, "--protocol", "mercury",
                     "--duration", "1.0", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    *reads, summary = lines
    assert len(reads) == 30
    assert set(reads[0]) == {"epc", "rssi", "antenna", "ts"}
    assert reads[0]["epc"] == reads[0]["epc"].upper() and reads[0]["antenna"] == 1
    assert summary["distinct_epcs"] == 3 and summary["frames_rejected"] == 0
    assert summary["frames_read"] >= 30


def test_cli_listen_unopenable_port_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rfid", "listen", "--port", "/dev/nonexistent-reader", "--protocol", "ascii",
                 "--duration", "0.2"]) == 1
    assert "could not open" in capsys.readouterr().err


def test_cli_simulate_prints_its_pty_path_first(tmp_path: Path) -> None:
    tags = tmp_path / "tags.txt"
    tags.write_text("3074257BF7194E4000001A85,1,-40\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "tenpo.cli", "rfid", "simulate", "--protocol", "ascii",
         "--tags", str(tags), "--rate", "50", "--duration", "5"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        path = process.stdout.readline().strip()
        port = serial.serial_for_url(path, timeout=2)
        assert port.readline().startswith(b"3074257BF7194E4000001A85,1,")
        port.close()
    finally:
        process.terminate()
        process.wait(5)


def test_profile_is_a_frozen_value() -> None:
    profile = ReaderProfile(port="socket://127.0.0.1:4001", protocol="r2000")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.port = "x"  # type: ignore[misc]


def test_a_region_the_module_cannot_take_is_a_config_error_naming_it() -> None:
    from tenpo.edge.rfid.transport import profile_from_mapping
    from tenpo.shared.errors import ConfigError

    with pytest.raises(ConfigError, match="region 'JP' is not one the r2000 protocol knows"):
        profile_from_mapping({"reader": {"protocol": "r2000", "port": "/dev/ttyUSB0", "region": "JP"}}, "yr903.toml")
    assert profile_from_mapping({"reader": {"protocol": "mercury", "port": "/dev/ttyUSB0", "region": "JP"}}, "m6e").region == "JP"
