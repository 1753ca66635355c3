"""Log lines of the long-running commands: syslog priority prefixes and no timestamp of their own when
stderr is the journal (JOURNAL_STREAM), plain timestamped text when run by hand. Checked on real
`tenpo edge run` and `tenpo cloud run` processes, and on the formatter for every level and a traceback."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tenpo.sandbox import Mosquitto, tenpo_command, write_store_config
from tenpo.shared.logs import (
    JOURNAL_SOCKET_ENV,
    JournalFormatter,
    configure_logging,
    journal_entry,
    writes_to_journal,
)

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def record(level: int, message: str, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("tenpo.edge.sync", level, __file__, 1, message, None, exc_info)  # type: ignore[arg-type]


@pytest.mark.parametrize(("level", "prefix"), [
    (logging.DEBUG, "<7>"), (logging.INFO, "<6>"), (logging.WARNING, "<4>"), (logging.ERROR, "<3>"),
    (logging.CRITICAL, "<2>"),
])  # fmt: skip
def test_journal_lines_start_with_the_syslog_priority(level: int, prefix: str) -> None:
    assert JournalFormatter().format(record(level, "broker lost")) == f"{prefix}tenpo.edge.sync: broker lost"


def test_every_line_of_a_traceback_keeps_the_error_priority() -> None:
    try:
        raise ValueError("bad frame")
    except ValueError:
        text = JournalFormatter().format(record(logging.ERROR, "reader failed", sys.exc_info()))
    lines = text.splitlines()
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>ValueError: bad frame"


def test_journal_stream_is_recognised_by_device_and_inode_only(tmp_path: Path) -> None:
    with (tmp_path / "a").open("w") as stream, (tmp_path / "b").open("w") as other:
        stat = os.fstat(stream.fileno())
        journal = {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
        assert writes_to_journal(stream, journal)
        assert not writes_to_journal(other, journal)  # inherited by a child whose stderr went elsewhere
        assert not writes_to_journal(stream, {})
        assert not writes_to_journal(stream, {"JOURNAL_STREAM": "garbage"})
        assert not writes_to_journal(io.StringIO(), journal)


def test_configure_logging_picks_the_form_from_the_stream(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        with (tmp_path / "journal").open("w") as stream:
            stat = os.fstat(stream.fileno())
            root.handlers.clear()
            configure_logging("WARNING", stream, {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"})
            logging.getLogger("tenpo.test").warning("disk low")
            logging.getLogger("tenpo.test").info("not at WARNING")
            root.handlers.clear()
            plain = io.StringIO()
            configure_logging("INFO", plain, {})
            logging.getLogger("tenpo.test").info("by hand")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    assert (tmp_path / "journal").read_text() == "<4>tenpo.test: disk low\n"
    assert re.fullmatch(TIMESTAMP.pattern + r",\d{3} INFO tenpo\.test: by hand\n", plain.getvalue())


# ---------------------------------------------------------------------------- real processes


def run_until_logged(args: list[str], log: Path, expected: str, journal: bool) -> list[str]:
    """Start ``tenpo ARGS`` with stderr to ``log`` (as the journal stream or not), wait for a line
    containing ``expected``, stop it with SIGTERM; its stderr lines."""
    with log.open("wb") as stream:
        stat = os.fstat(stream.fileno())
        env = {key: value for key, value in os.environ.items() if key != "JOURNAL_STREAM"}
        env[JOURNAL_SOCKET_ENV] = ""  # stderr even on a host whose journald is listening
        if journal:
            env["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino}"
        process = subprocess.Popen(tenpo_command(*args), env=env, stdout=subprocess.DEVNULL, stderr=stream)
        try:
            deadline = time.monotonic() + 60
            while expected not in log.read_text():  # the log line is the event: nothing else says it
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0, log.read_text()
        finally:
            process.kill()
            process.wait()
    return log.read_text().splitlines()


def assert_form(lines: list[str], journal: bool, expected_line: str) -> None:
    if journal:
        assert all(re.match(r"<[0-7]>", line) for line in lines), lines
        assert not any(TIMESTAMP.search(line) for line in lines), lines
        assert any(line.startswith("<6>" + expected_line) for line in lines), lines
    else:
        assert all(TIMESTAMP.match(line) for line in lines), lines
        assert any(re.match(TIMESTAMP.pattern + r",\d{3} INFO " + re.escape(expected_line), line) for line in lines)


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "by-hand"])
def test_edge_run_logs_for_the_journal_or_by_hand(tmp_path: Path, journal: bool) -> None:
    config = write_store_config(tmp_path, "S001", "mqtt://127.0.0.1:1")
    lines = run_until_logged(["edge", "run", "--config", str(config)], tmp_path / "agent.log",
                             "agent starting", journal)  # fmt: skip
    assert_form(lines, journal, "tenpo.edge.agent: store S001 (Store S001) agent starting")


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "by-hand"])
def test_cloud_run_logs_for_the_journal_or_by_hand(tmp_path: Path, broker: Mosquitto, journal: bool) -> None:
    args = ["cloud", "run", "--db", f"sqlite:///{tmp_path / 'central.db'}", "--broker", broker.url]
    lines = run_until_logged(args, tmp_path / "aggregator.log", "aggregator connected", journal)
    assert_form(lines, journal, "tenpo.cloud.aggregator: aggregator connected to")


# ---------------------------------------------------------------------------- journal native protocol


def parse_entry(data: bytes) -> dict[str, str]:
    """The journal's native protocol read back (systemd.journal-fields(7), "binary" values included)."""
    fields, at = {}, 0
    while at < len(data):
        end = data.index(b"\n", at)
        line = data[at:end]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            at = end + 1
        else:
            name, (size,) = line, struct.unpack("<Q", data[end + 1 : end + 9])
            value = data[end + 9 : end + 9 + size]
            assert data[end + 9 + size : end + 10 + size] == b"\n"
            at = end + 10 + size
        fields[name.decode()] = value.decode()
    return fields


def test_journal_entry_carries_priority_message_and_the_structured_fields() -> None:
    plain = record(logging.WARNING, "reader silent")
    plain.reader = "dock-1"
    entry = parse_entry(journal_entry(plain, "tenpo.edge.sync: reader silent", {"TENPO_STORE_ID": "S001"}))
    assert entry["MESSAGE"] == "tenpo.edge.sync: reader silent" and entry["PRIORITY"] == "4"
    assert entry["TENPO_STORE_ID"] == "S001" and entry["TENPO_READER"] == "dock-1"
    assert entry["SYSLOG_IDENTIFIER"] == "tenpo" and entry["TENPO_LOGGER"] == "tenpo.edge.sync"
    assert "TENPO_EVENT_TYPE" not in entry
    traceback = parse_entry(journal_entry(record(logging.ERROR, "x"), "failed\nTraceback ...\nValueError: 予期せぬ", {}))
    assert traceback["MESSAGE"] == "failed\nTraceback ...\nValueError: 予期せぬ" and traceback["PRIORITY"] == "3"


def test_edge_run_sends_native_journal_entries_with_the_store_id(tmp_path: Path) -> None:
    journald = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journald.bind(str(tmp_path / "journal.sock"))
    journald.settimeout(30)
    config = write_store_config(tmp_path, "S001", "mqtt://127.0.0.1:1")
    with (tmp_path / "agent.log").open("wb") as stream:
        stat = os.fstat(stream.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}", JOURNAL_SOCKET_ENV: journald.getsockname()}
        process = subprocess.Popen(tenpo_command("edge", "run", "--config", str(config)), env=env,
                                   stdout=subprocess.DEVNULL, stderr=stream)  # fmt: skip
        entries = []
        try:
            # Read until it has exited, as journald would: a datagram queue left full blocks the sender.
            stopping = False
            while True:
                try:
                    entries.append(parse_entry(journald.recv(65536)))
                except TimeoutError:
                    if process.poll() is not None:
                        break
                    assert stopping, "no journal entry from the agent"
                    continue
                if not stopping and "agent starting" in entries[-1]["MESSAGE"]:
                    process.send_signal(signal.SIGTERM)
                    stopping = True
                    journald.settimeout(0.1)
            assert process.wait(timeout=30) == 0
        finally:
            process.kill()
            process.wait()
            journald.close()
    entry = next(entry for entry in entries if "agent starting" in entry["MESSAGE"])
    assert entry["PRIORITY"] == "6" and entry["TENPO_STORE_ID"] == "S001"
    assert entry["MESSAGE"].startswith("tenpo.edge.agent: store S001 (Store S001) agent starting")
    assert entry["CODE_FUNC"] == "run_agent"
    assert (tmp_path / "agent.log").read_text() == ""  # nothing twice: the entries went to the journal only
