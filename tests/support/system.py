"""Stores and aggregators as real processes, and ways to wait for what they do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from tenpo.cloud.admin import add_store
from tenpo.cloud.db import Central
from tenpo.edge.agent import init_store
from tenpo.edge.config import load_config


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


def write_store_config(directory: Path, store_id: str, broker_url: str, **sync: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{store_id}.toml"
    lines = [
        "[store]", f'id = "{store_id}"', f'name = "Store {store_id}"', f'database = "{directory / (store_id + ".db")}"',
        "[broker]", f'url = "{broker_url}"', "[sync]",
    ]  # fmt: skip
    settings = {"ack_timeout_s": 2.0, "pull_interval_s": 2.0, "status_interval_s": 1.0, **sync}
    lines += [f"{key} = {value}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def provision_store(directory: Path, store_id: str, broker_url: str, db_url: str, **sync: Any) -> Path:
    """Config, replica, key pair, and registration at HQ: what an installer does for a new store."""
    path = write_store_config(directory, store_id, broker_url, **sync)
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


class Process:
    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> "Process":
        handle = open(self.log, "ab")
        self.popen = subprocess.Popen([sys.executable, "-m", "tenpo", *self.args], stdout=handle, stderr=handle,
                                      env=_env())  # fmt: skip
        handle.close()
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


def aggregator_process(db_url: str, broker_url: str, log: Path, client_id: str | None = None) -> Process:
    args = ["cloud", "run", "--db", db_url, "--broker", broker_url]
    if client_id:
        args += ["--client-id", client_id]
    return Process(args, log)
