"""A reader on a pseudo-terminal: answers configuration commands as the module does and streams reads.

``ReaderSimulator`` works in-process (tests start it, unplug it, plug it back) and behind
``tenpo rfid simulate``. All file-descriptor work happens on its own thread; ``unplug()`` and
``replug()`` are requests that thread carries out, so a PTY is never closed under a pending select.
With ``link`` set, a symlink follows the current PTY the way /dev/serial/by-id/... follows a USB
adapter, so a transport can reopen the same path after a power cycle.
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
import tty
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from tenpo.edge.rfid import ascii_lines, mercury, r2000
from tenpo.edge.rfid.reads import TagRead

Protocol = Literal["mercury", "r2000", "ascii"]
PROTOCOLS: Final[tuple[str, ...]] = ("mercury", "r2000", "ascii")

# Payload of the logged M6E Nano VERSION reply (rfid.md §1.3).
_MERCURY_VERSION: Final = bytes.fromhex("14120800 30000002 20150310 01030147 00000010")
_MERCURY_MAX_POWER_CDBM: Final = 2700
_R2000_MAX_POWER_DBM: Final = 33
_TICK: Final = 0.02  # loop period: bounds stop() latency and rate granularity


@dataclass(frozen=True, slots=True)
class SimTag:
    epc: str
    antenna: int = 1
    rssi: int = -55


def parse_tags(lines: Iterable[str]) -> list[SimTag]:
    """Tags file: one EPC per line, or ``EPC,ANTENNA,RSSI``; blank lines and # comments skipped."""
    tags = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        read = ascii_lines.parse_line(text, 0.0)
        if read is None:
            raise ValueError(f"line {number}: not an EPC or EPC,ANTENNA,RSSI: {text!r}")
        tags.append(SimTag(read.epc, read.antenna, -55 if read.rssi is None else read.rssi))
    return tags


def load_tags(path: str | Path) -> list[SimTag]:
    return parse_tags(Path(path).read_text(encoding="utf-8").splitlines())


def default_tags(count: int = 8) -> list[SimTag]:
    """A few SGTIN-96 tags of one GTIN (0614141 812345, TDS Annex E), serials 1..count."""
    base = 0x3074257BF7194E4000000000
    return [SimTag(f"{base + serial:024X}", 1, -50 - serial % 20) for serial in range(1, count + 1)]


@dataclass
class _Pty:
    master: int
    slave: int
    path: str


@dataclass
class SimulatorCounters:
    reads_sent: int = 0
    noise_bursts: int = 0
    cut_frames: int = 0
    bytes_dropped: int = 0  # nobody reading: the PTY buffer was full
    commands: list[tuple[int, bytes]] = field(default_factory=list)  # (opcode/cmd, data) received


class ReaderSimulator:
    """Simulated reader. ``start()`` returns the PTY path; ``stop()`` returns within ~0.1 s."""

    def __init__(
        self,
        protocol: Protocol,
        tags: list[SimTag] | None = None,
        rate: float = 20.0,
        noise: float = 0.0,
        *,
        seed: int | None = None,
        link: str | Path | None = None,
        max_reads: int | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}")
        self.protocol = protocol
        self.tags = tags or default_tags()
        self.rate = rate
        self.noise = noise
        self.link = Path(link) if link else None
        self.max_reads = max_reads
        self.counters = SimulatorCounters()
        self._random = random.Random(seed)
        self._pty: _Pty | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._requests: list[tuple[str, threading.Event]] = []
        self._lock = threading.Lock()
        self._path_ready = threading.Event()
        self._streaming = protocol == "ascii"  # ascii readers stream from power-on
        self._round_left = 0  # r2000: tag records still due in the current inventory round
        self._round_cmd = r2000.CMD_REAL_TIME_INVENTORY
        self._round_total = 0
        self._next_tag = 0
        self._stream_start = 0.0
        self._stream_sent = 0
        self._last_keepalive = 0.0
        self._mercury_in = mercury.CommandDecoder()
        self._r2000_in = r2000.CommandDecoder()

    # ---------------------------------------------------------------------------------- control

    @property
    def path(self) -> str:
        """Where a client opens the reader: the stable link if any, else the current PTY."""
        if self.link is not None:
            return str(self.link)
        return self._pty.path if self._pty else ""

    @property
    def pty_path(self) -> str:
        return self._pty.path if self._pty else ""

    @property
    def streaming(self) -> bool:
        return self._streaming

    def start(self) -> str:
        self._open_pty()
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.protocol}", daemon=True)
        self._thread.start()
        return self.path

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._close_pty()
        if self.link is not None:
            self.link.unlink(missing_ok=True)

    def unplug(self) -> None:
        """Pull the cable: the PTY disappears and the client's reads fail."""
        self._request("unplug")

    def replug(self) -> str:
        """Plug back in: a NEW PTY (a new path; the link, if any, is moved to it). The module
        restarts idle, as after a power cycle: streaming must be configured again."""
        self._request("replug")
        return self.path

    def power_cycle(self) -> str:
        self.unplug()
        return self.replug()

    def __enter__(self) -> ReaderSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _request(self, what: str) -> None:
        done = threading.Event()
        with self._lock:
            self._requests.append((what, done))
        if not done.wait(timeout=2):
            raise TimeoutError(f"simulator did not {what}")

    # ---------------------------------------------------------------------------------- PTY

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # binary-clean: no echo, no CR/LF translation
        os.set_blocking(master, False)
        self._pty = _Pty(master, slave, os.ttyname(slave))
        if self.link is not None:
            temporary = self.link.with_name(self.link.name + ".new")
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(self._pty.path)
            temporary.replace(self.link)  # atomic: a client never sees the link missing
        self._streaming = self.protocol == "ascii"
        self._stream_start = 0.0
        self._round_left = 0
        self._mercury_in = mercury.CommandDecoder()
        self._r2000_in = r2000.CommandDecoder()

    def _close_pty(self) -> None:
        if self._pty is not None:
            for fd in (self._pty.master, self._pty.slave):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._pty = None

    # ---------------------------------------------------------------------------------- loop

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._serve_requests()
            pty = self._pty
            if pty is None:
                time.sleep(_TICK)
                continue
            try:
                readable, _, _ = select.select([pty.master], [], [], _TICK)
                if readable:
                    data = os.read(pty.master, 4096)
                    self._on_host_bytes(data)
                self._emit_due_reads()
            except OSError:
                time.sleep(_TICK)  # the client side went away; wait for it or for a request

    def _serve_requests(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, []
        for what, done in requests:
            if what == "unplug":
                self._close_pty()
                if self.link is not None:
                    self.link.unlink(missing_ok=True)  # as udev removes /dev/serial/by-id/...
            elif what == "replug":
                self._close_pty()
                self._open_pty()
            done.set()

    def _write(self, data: bytes) -> None:
        if self._pty is None:
            return
        if self.noise and self._random.random() < self.noise:
            if self._random.random() < 0.5:
                self.counters.noise_bursts += 1
                data = self._random.randbytes(self._random.randint(1, 8)) + data
            else:
                self.counters.cut_frames += 1
                data = data[: self._random.randint(1, max(1, len(data) - 1))]
        try:
            written = os.write(self._pty.master, data)
        except BlockingIOError:
            written = 0
        self.counters.bytes_dropped += len(data) - written

    # ---------------------------------------------------------------------------------- commands

    def _on_host_bytes(self, data: bytes) -> None:
        if self.protocol == "mercury":
            for command in self._mercury_in.feed(data):
                self.counters.commands.append((command.opcode, command.data))
                self._write(self._mercury_reply(command))
        elif self.protocol == "r2000":
            for command in self._r2000_in.feed(data):
                self.counters.commands.append((command.cmd, command.data))
                reply = self._r2000_reply(command)
                if reply:
                    self._write(reply)

    def _mercury_reply(self, command: mercury.Command) -> bytes:
        op, data = command.opcode, command.data
        if op == mercury.OP_VERSION:
            return mercury.build_response(op, _MERCURY_VERSION)
        if op == mercury.OP_SET_REGION:
            ok = len(data) == 1 and data[0] in mercury.REGIONS.values()
            return mercury.build_response(op, status=0 if ok else 0x010B)
        if op == mercury.OP_SET_READ_TX_POWER:
            power = int.from_bytes(data[:2], "big", signed=True) if len(data) >= 2 else -1
            status = 0x0103 if power > _MERCURY_MAX_POWER_CDBM else 0x0106 if power < 0 else 0
            return mercury.build_response(op, status=status)
        if op in (mercury.OP_SET_TAG_PROTOCOL, mercury.OP_SET_READER_OPT_PARAMS,
                  mercury.OP_SET_ANTENNA_PORT, mercury.OP_SET_BAUD_RATE):
            return mercury.build_response(op)
        if op == mercury.OP_MULTI_PROTOCOL_TAG_OP and data[:3] == b"\x00\x00\x02":
            self._streaming = False
            return mercury.build_response(op, b"\x02")
        if op == mercury.OP_MULTI_PROTOCOL_TAG_OP and data[:3] == b"\x00\x00\x01":
            self._begin_stream()
            return mercury.build_response(op, b"\x01\x22\x00\x00")
        return mercury.build_response(op, status=0x0101)

    def _r2000_reply(self, command: r2000.Command) -> bytes:
        cmd, data, addr = command.cmd, command.data, command.address

        def result(code: int) -> bytes:
            return r2000.build_frame(cmd, bytes((code,)), addr)

        if cmd == r2000.CMD_GET_FIRMWARE_VERSION:
            return r2000.build_frame(cmd, b"\x01\x00", addr)
        if cmd == r2000.CMD_SET_OUTPUT_POWER:
            ok = data and max(data) <= _R2000_MAX_POWER_DBM
            return result(r2000.SUCCESS if ok else 0x48)
        if cmd == r2000.CMD_SET_WORK_ANTENNA:
            return result(r2000.SUCCESS if data and data[0] < 4 else 0x41)
        if cmd in (r2000.CMD_SET_FREQUENCY_REGION, r2000.CMD_RESET_INVENTORY_BUFFER):
            return result(r2000.SUCCESS)
        if cmd in (r2000.CMD_REAL_TIME_INVENTORY, r2000.CMD_FAST_SWITCH_INVENTORY):
            # One round: a share of the population, paced by the rate, then the summary.
            if not self._streaming:
                self._begin_stream()
            self._round_cmd = cmd
            self._round_left = max(1, min(len(self.tags), int(self.rate * 0.2)))
            self._round_total = 0
            return b""
        return result(0x11)

    # ---------------------------------------------------------------------------------- reads

    def _begin_stream(self) -> None:
        self._streaming = True
        self._stream_start = time.monotonic()
        self._stream_sent = 0
        self._last_keepalive = self._stream_start

    def _emit_due_reads(self) -> None:
        if not self._streaming:
            return
        now = time.monotonic()
        if self.protocol == "ascii" and not self._stream_start:
            self._begin_stream()
        due = int((now - self._stream_start) * self.rate) - self._stream_sent
        if self.protocol == "r2000":
            due = min(due, self._round_left)
        if self.max_reads is not None:
            due = min(due, self.max_reads - self.counters.reads_sent)
        for _ in range(max(0, due)):
            self._write(self._tag_frame(self._pick_tag()))
            self._stream_sent += 1
            self.counters.reads_sent += 1
            if self.protocol == "r2000":
                self._round_left -= 1
                self._round_total += 1
        if self.protocol == "r2000" and self._round_left == 0 and self._round_total:
            self._write(self._round_end())
            self._round_total = 0
        if due <= 0 and self.protocol == "r2000" and self._round_left == 0:
            self._stream_start = now - self._stream_sent / self.rate  # no catch-up between rounds
        if self.protocol == "mercury" and now - self._last_keepalive >= 1.0:
            self._last_keepalive = now
            self._write(mercury.build_response(mercury.OP_READ_TAG_ID_MULTIPLE,
                                               status=mercury.STATUS_NO_TAGS_FOUND))

    def _pick_tag(self) -> SimTag:
        tag = self.tags[self._next_tag % len(self.tags)]
        self._next_tag += 1
        return tag

    def _tag_frame(self, tag: SimTag) -> bytes:
        rssi = tag.rssi + self._random.randint(-3, 3)
        epc = bytes.fromhex(tag.epc)
        if self.protocol == "mercury":
            reader_ms = int((time.monotonic() - self._last_keepalive) * 1000)
            return mercury.build_tag_notification(epc, rssi, tag.antenna, 920_400, reader_ms)
        if self.protocol == "r2000":
            return r2000.build_tag_record(epc, tag.antenna, rssi, 7, self._round_cmd)
        return ascii_lines.format_line(TagRead(tag.epc, rssi, tag.antenna, 0.0))

    def _round_end(self) -> bytes:
        if self._round_cmd == r2000.CMD_FAST_SWITCH_INVENTORY:
            data = self._round_total.to_bytes(3, "big") + (200).to_bytes(4, "big")
            return r2000.build_frame(r2000.CMD_FAST_SWITCH_INVENTORY, data)
        return r2000.build_round_end(self._round_total, 1, int(self.rate))
