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
from typing import Final

from tenpo.edge.rfid import ascii_lines
from tenpo.edge.rfid.driver import ReaderDriver, SimulatedModule
from tenpo.edge.rfid.registry import DRIVERS, PROTOCOLS

__all__ = [
    "PROTOCOLS", "ReaderSimulator", "SimTag", "SimulatorCounters", "default_tags", "load_tags", "parse_tags",
]

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
        protocol: str,
        tags: list[SimTag] | None = None,
        rate: float = 20.0,
        noise: float = 0.0,
        *,
        seed: int | None = None,
        link: str | Path | None = None,
        max_reads: int | None = None,
    ) -> None:
        driver = DRIVERS.get(protocol)
        if driver is None:
            raise ValueError(f"unknown protocol {protocol!r}")
        self.protocol = protocol
        self.driver: ReaderDriver = driver
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
        self._next_tag = 0
        self._paced_since = 0.0  # reads are paced at ``rate`` from here ...
        self._paced = 0  # ... and this many were sent since
        self._module: SimulatedModule = self._power_up()

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
        self._module = self._power_up()  # a power cycle: the module forgets its configuration

    def _power_up(self) -> SimulatedModule:
        self._paced_since, self._paced = time.monotonic(), 0
        return self.driver.simulated_module(len(self.tags), self.rate)

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

    # ---------------------------------------------------------------------------------- module

    def _on_host_bytes(self, data: bytes) -> None:
        for command in self._module.on_host_bytes(data, time.monotonic()):
            self.counters.commands.append((command.code, command.data))
            if command.reply:
                self._write(command.reply)

    def _emit_due_reads(self) -> None:
        module = self._module
        now = time.monotonic()
        wanted = module.reads_wanted()
        if wanted == 0:  # not reading, or between rounds: no burst to catch up on afterwards
            self._paced_since = now - self._paced / self.rate
        due = int((now - self._paced_since) * self.rate) - self._paced
        if wanted is not None:
            due = min(due, wanted)
        if self.max_reads is not None:
            due = min(due, self.max_reads - self.counters.reads_sent)
        for _ in range(max(0, due)):
            tag = self.tags[self._next_tag % len(self.tags)]
            self._next_tag += 1
            rssi = tag.rssi + self._random.randint(-3, 3)
            self._write(module.tag_report(tag.epc, tag.antenna, rssi, now))
            self._paced += 1
            self.counters.reads_sent += 1
        tail = module.after_reads(now)
        if tail:
            self._write(tail)
