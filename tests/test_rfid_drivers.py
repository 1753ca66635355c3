"""Reader drivers: each protocol's behaviour as a pure object, and a protocol the transport and the
simulator have never heard of, added by registering one driver, working end to end on a real PTY."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path
from typing import NamedTuple

import msgspec
import pytest

from tenpo.edge.rfid import ascii_lines, mercury, r2000
from tenpo.edge.rfid.driver import Exchange, HostCommand, ReaderDriver, SimulatedModule
from tenpo.edge.rfid.mercury_driver import MercuryDriver
from tenpo.edge.rfid.profile import ReaderProfile
from tenpo.edge.rfid.r2000_driver import R2000Driver
from tenpo.edge.rfid.reads import DecoderStats, TagRead
from tenpo.edge.rfid.registry import DRIVERS, profile_from_mapping
from tenpo.edge.rfid.simulator import ReaderSimulator, default_tags
from tenpo.edge.rfid.transport import ReaderConnection
from tenpo.shared.errors import ConfigError
from tests.test_rfid_simulator import wait_until

RFID = Path(__file__).resolve().parents[1] / "edge" / "rfid"
pytestmark = pytest.mark.timeout(30)


# ------------------------------------------------------------------------------------ no branching


@pytest.mark.parametrize("module", ["transport.py", "simulator.py"])
def test_transport_and_simulator_name_no_protocol(module: str) -> None:
    tree = ast.parse((RFID / module).read_text(encoding="utf-8"))
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    named = {name for name in DRIVERS if any(name in text for text in strings)}
    assert not named, f"{module} names {named}: that belongs in the protocol's driver"
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert not imported & {"mercury", "r2000", "mercury_driver", "r2000_driver", "ascii_driver"}


# ------------------------------------------------------------------------------------ R2000


def test_r2000_rounds_over_several_antennas_use_fast_switch_inventory() -> None:
    driver = R2000Driver()
    two = ReaderProfile(port="x", protocol="r2000", tx_power_dbm={1: 30, 2: 26}, region="FCC")
    steps = driver.configuration(two)
    assert [s.command[3] for s in steps] == [r2000.CMD_GET_FIRMWARE_VERSION, r2000.CMD_SET_FREQUENCY_REGION,
                                             r2000.CMD_SET_OUTPUT_POWER, r2000.CMD_FAST_SWITCH_INVENTORY]
    assert [s.awaits_reply for s in steps] == [True, True, True, False]  # a round answers with reads
    one = ReaderProfile(port="x", protocol="r2000")
    assert [s.command[3] for s in driver.configuration(one)] == [
        r2000.CMD_GET_FIRMWARE_VERSION, r2000.CMD_SET_WORK_ANTENNA, r2000.CMD_REAL_TIME_INVENTORY]
    # Each later round is asked for with the command that started the first.
    assert driver.next_round(two) == steps[-1].command
    assert driver.next_round(one) == driver.configuration(one)[-1].command


def test_simulated_r2000_reads_one_round_per_command_then_reports_its_end() -> None:
    driver = R2000Driver()
    module = driver.simulated_module(tag_count=10, rate=20)  # a round: 20/s x 0.2 s = 4 reads
    assert module.reads_wanted() == 0, "no reads before the host asks for a round"
    (command,) = module.on_host_bytes(r2000.cmd_real_time_inventory(1), now=0.0)
    assert (command.code, command.reply) == (r2000.CMD_REAL_TIME_INVENTORY, b"")
    assert module.reads_wanted() == 4
    tags = default_tags(4)
    stream = b"".join(module.tag_report(t.epc, 1, -60, 0.0) for t in tags) + module.after_reads(0.0)
    events = r2000.Decoder(clock=lambda: 0.0).feed(stream)
    assert [e.epc for e in events if isinstance(e, TagRead)] == [t.epc for t in tags]
    assert driver.is_round_end(events[-1]) and events[-1].total_reads == 4
    assert module.reads_wanted() == 0 and module.after_reads(1.0) == b"", "one summary per round"


def test_r2000_refusal_names_the_error() -> None:
    driver = R2000Driver()
    module = driver.simulated_module(tag_count=1, rate=1)
    too_strong = r2000.cmd_set_output_power(40)
    (command,) = module.on_host_bytes(too_strong, now=0.0)
    (reply,) = r2000.Decoder().feed(command.reply)
    assert driver.answers(too_strong, reply) and not driver.answers(r2000.cmd_get_firmware_version(), reply)
    assert driver.refusal(too_strong, reply) == "command 0x76 refused: output power out of range"


# ------------------------------------------------------------------------------------ Mercury


def test_simulated_mercury_streams_after_start_with_a_keepalive_each_second() -> None:
    driver = MercuryDriver()
    module = driver.simulated_module(tag_count=1, rate=10)
    assert module.reads_wanted() == 0
    module.on_host_bytes(mercury.cmd_start_continuous_read(), now=100.0)
    assert module.reads_wanted() is None, "a streaming module sends as fast as it reads"
    assert module.after_reads(100.5) == b""
    (keepalive,) = mercury.Decoder().feed(module.after_reads(101.0))
    assert keepalive == mercury.KeepAlive(mercury.STATUS_NO_TAGS_FOUND)
    (read,) = mercury.Decoder().feed(module.tag_report("596F596F", 1, -57, 101.25))
    assert (read.epc, read.rssi, read.reader_ms) == ("596F596F", -57, 250)  # ms since the keep-alive
    (stopped,) = module.on_host_bytes(driver.stop_command(), now=102.0)
    assert mercury.is_stop_acknowledgement(mercury.Decoder().feed(stopped.reply)[0])
    assert module.reads_wanted() == 0


def test_mercury_configuration_stops_a_running_stream_first_and_uses_the_strongest_power() -> None:
    steps = MercuryDriver().configuration(ReaderProfile(port="x", protocol="mercury", tx_power_dbm={1: 20, 2: 24}))
    assert steps[0] == Exchange(mercury.cmd_stop_continuous_read(), awaits_reply=False)
    assert Exchange(mercury.cmd_set_read_power(24)) in steps
    assert steps[-1] == Exchange(mercury.cmd_start_continuous_read())


# ------------------------------------------------------------------------------------ a new protocol

TOY_COMMANDS = {"HELLO": 1, "REGION": 2, "READ": 3, "STOP": 4}


class ToyReply(NamedTuple):
    command: str
    refusal: str | None


class ToyDecoder:
    """Lines: ``OK CMD`` or ``NO CMD REASON`` answer a command; any other line is ``EPC,ANT,RSSI``."""

    def __init__(self) -> None:
        self.stats = DecoderStats()
        self._rest = b""

    def feed(self, chunk: bytes) -> list[object]:
        *lines, self._rest = (self._rest + chunk).split(b"\n")
        events: list[object] = []
        for raw in lines:
            word, _, rest = raw.decode("ascii", "replace").partition(" ")
            read = ascii_lines.parse_line(raw.decode("ascii", "replace"), time.time())
            if word in ("OK", "NO"):
                command, _, reason = rest.partition(" ")
                events.append(ToyReply(command, reason if word == "NO" else None))
            elif read is not None:
                events.append(msgspec.structs.replace(read, protocol="toy"))
            else:
                self.stats.reject_payload()
                continue
            self.stats.frames_ok += 1
        return events

    def idle(self) -> list[object]:
        return []


class ToyModule(SimulatedModule):
    def __init__(self) -> None:
        self.reading = False
        self._rest = b""

    def on_host_bytes(self, data: bytes, now: float) -> list[HostCommand]:
        *lines, self._rest = (self._rest + data).split(b"\n")
        return [self._answer(*line.decode().partition(" ")[::2]) for line in lines]

    def _answer(self, word: str, argument: str) -> HostCommand:
        reply = f"OK {word}\n"
        if word == "REGION" and argument != "JP":
            reply = f"NO {word} unsupported region\n"
        self.reading = {"READ": True, "STOP": False}.get(word, self.reading)
        return HostCommand(TOY_COMMANDS.get(word, 0), argument.encode(), reply.encode())

    def reads_wanted(self) -> int | None:
        return None if self.reading else 0

    def tag_report(self, epc: str, antenna: int, rssi: int, now: float) -> bytes:
        return f"{epc},{antenna},{rssi}\n".encode()


class ToyDriver(ReaderDriver):
    name = "toy"
    regions = frozenset({"JP", "EU"})

    def decoder(self, profile: ReaderProfile) -> ToyDecoder:
        return ToyDecoder()

    def configuration(self, profile: ReaderProfile) -> list[Exchange]:
        region = [Exchange(f"REGION {profile.region}\n".encode())] if profile.region else []
        return [Exchange(b"HELLO\n"), *region, Exchange(b"READ\n")]

    def answers(self, command: bytes, event: object) -> bool:
        return isinstance(event, ToyReply) and command.decode().split()[0] == event.command

    def refusal(self, command: bytes, reply: object) -> str | None:
        assert isinstance(reply, ToyReply)
        return None if reply.refusal is None else f"{reply.command} refused: {reply.refusal}"

    def stop_command(self) -> bytes:
        return b"STOP\n"

    def simulated_module(self, tag_count: int, rate: float) -> ToyModule:
        return ToyModule()


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> ToyDriver:
    driver = ToyDriver()
    monkeypatch.setitem(DRIVERS, driver.name, driver)
    return driver


def test_a_registered_protocol_is_configured_read_and_stopped_end_to_end(toy: ToyDriver) -> None:
    tags = default_tags(3)
    reads: list[TagRead] = []
    got_reads = threading.Event()

    def on_read(read: TagRead) -> None:
        reads.append(read)
        if len(reads) >= 10:
            got_reads.set()

    with ReaderSimulator("toy", tags, rate=200) as sim:
        profile = profile_from_mapping({"reader": {"protocol": "toy", "port": sim.path, "region": "JP"}})
        connection = ReaderConnection(profile, on_read)
        connection.start()
        try:
            assert got_reads.wait(5), connection.last_error
        finally:
            connection.stop()
        wait_until(lambda: (4, b"") in sim.counters.commands)  # the transport said goodbye
    assert [code for code, _ in sim.counters.commands] == [1, 2, 3, 4]
    assert sim.counters.commands[1] == (2, b"JP")
    assert {r.epc for r in reads} == {t.epc for t in tags} and {r.protocol for r in reads} == {"toy"}
    assert connection.connects == 1 and connection.stats.frames_rejected == 0


def test_a_registered_protocols_refusal_keeps_the_reader_retrying(toy: ToyDriver) -> None:
    with ReaderSimulator("toy") as sim:
        profile = profile_from_mapping({"reader": {"protocol": "toy", "port": sim.path, "region": "EU"}})
        connection = ReaderConnection(profile, lambda read: None, backoff_initial=0.01, backoff_max=0.05)
        connection.start()
        try:
            wait_until(lambda: connection.failures >= 2)
        finally:
            connection.stop()
    assert connection.connects == 0
    assert connection.last_error == "ReaderConfigError: REGION refused: unsupported region"


def test_a_registered_protocols_regions_are_checked_when_the_profile_loads(toy: ToyDriver) -> None:
    with pytest.raises(ConfigError, match=r"region 'US' is not one the toy protocol knows \(EU, JP\)"):
        profile_from_mapping({"reader": {"protocol": "toy", "port": "/dev/x", "region": "US"}}, "toy.toml")
