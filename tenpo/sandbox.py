"""A whole chain on one machine: a private Mosquitto, aggregators and stores as real processes.

Used by `tenpo demo`, the tests and the benchmarks. Each broker gets its own port and config file,
so a caller can stop, restart or cut it without touching the system's broker.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenpo.cloud.admin import add_store
from tenpo.cloud.db import Central
from tenpo.edge.agent import init_store
from tenpo.edge.config import load_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, up: bool = True, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.02)
    raise TimeoutError(f"port {port} did not come {'up' if up else 'down'} in {timeout}s")


class Mosquitto:
    """``tls_dir`` (with ca.pem, broker.crt, broker.key and an ``acl`` file) makes it a TLS broker that
    requires client certificates and takes the certificate CN as the username."""

    def __init__(self, workdir: Path, port: int | None = None, tls_dir: Path | None = None) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed (make test installs it)")
        self.binary = binary
        self.port = port or free_port()
        self.workdir = workdir
        self.config = workdir / f"mosquitto-{self.port}.conf"
        tls = (
            f"cafile {tls_dir / 'ca.pem'}\ncertfile {tls_dir / 'broker.crt'}\nkeyfile {tls_dir / 'broker.key'}\n"
            f"require_certificate true\nuse_identity_as_username true\nacl_file {tls_dir / 'acl'}\n"
            if tls_dir else ""
        )
        self.tls = tls_dir is not None
        self.config.write_text(
            # Run as whoever started it: as root, Mosquitto would otherwise switch to "mosquitto" and lose
            # access to our (private) work folder, its certificates and its log.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            f"listener {self.port} 127.0.0.1\n" + tls +
            f"allow_anonymous {'false' if tls_dir else 'true'}\n"
            "persistence false\n"
            "max_queued_messages 100000\n"
            "max_inflight_messages 100\n"
            "log_type error\n"
            "log_type warning\n"
            f"log_dest file {workdir / f'mosquitto-{self.port}.log'}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)  # fmt: skip
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        wait_for_port(self.port, up=False)

    def restart(self) -> None:
        self.stop()
        self.start()




def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll an observable condition (a row count, a status field) until it holds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate} (last value {last!r})")


def write_store_config(
    directory: Path, store_id: str, broker_url: str, broker_extra: dict[str, str] | None = None, **sync: Any
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{store_id}.toml"
    lines = [
        "[store]", f'id = "{store_id}"', f'name = "Store {store_id}"', f'database = "{directory / (store_id + ".db")}"',
        "[broker]", f'url = "{broker_url}"',
        *(f'{key} = "{value}"' for key, value in (broker_extra or {}).items()), "[sync]",
    ]  # fmt: skip
    settings = {"ack_timeout_s": 2.0, "pull_interval_s": 2.0, "status_interval_s": 1.0, **sync}
    lines += [f"{key} = {value}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def provision_store(
    directory: Path, store_id: str, broker_url: str, db_url: str, broker_extra: dict[str, str] | None = None, **sync: Any
) -> Path:
    """Config, replica, key pair, and registration at HQ: what an installer does for a new store."""
    path = write_store_config(directory, store_id, broker_url, broker_extra, **sync)
    config = load_config(str(path))
    init_store(config).conn.close()
    central = Central(db_url)
    add_store(central, store_id, config.public_key.read_text(), f"Store {store_id}")
    central.close()
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TENPO_LOG_LEVEL", "WARNING")
    return env


def tenpo_command(*args: str) -> list[str]:
    """The command line that runs ``tenpo ARGS`` with this interpreter.

    ``-P`` keeps the working directory off sys.path: started from a source checkout, plain
    ``python -m tenpo`` would import the checkout's partial ``tenpo/`` folder (no edge, cloud or
    shared in it) instead of the installed package.
    """
    return [sys.executable, "-P", "-m", "tenpo", *args]


class Process:
    live: set[Process] = set()  # every started process, so a failed test can still clean up

    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None

    @classmethod
    def kill_all(cls) -> None:
        for process in list(cls.live):
            process.kill()
        cls.live.clear()

    def start(self) -> Process:
        handle = open(self.log, "ab")
        self.popen = subprocess.Popen(tenpo_command(*self.args), stdout=handle, stderr=handle, env=_env())
        handle.close()
        Process.live.add(self)
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye, no flush: what a power cut looks like to the process."""
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def terminate(self, timeout: float = 10.0) -> int:
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def store_process(config: Path) -> Process:
    return Process(["edge", "run", "--config", str(config)], config.with_suffix(".log"))


def aggregator_process(
    db_url: str, broker_url: str, log: Path, client_id: str | None = None, tls: tuple[Path, Path, Path] | None = None
) -> Process:
    args = ["cloud", "run", "--db", db_url, "--broker", broker_url]
    if client_id:
        args += ["--client-id", client_id]
    if tls:
        args += ["--tls-ca", str(tls[0]), "--tls-cert", str(tls[1]), "--tls-key", str(tls[2])]
    return Process(args, log)
