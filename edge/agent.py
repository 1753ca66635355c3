"""`tenpo edge run`: the store agent. Owns the sync link (and, as configured, readers and beacons).

SIGTERM or SIGINT stops it cleanly: the loop finishes the message in hand, says goodbye to the
broker (death message) and closes the database, well inside systemd's stop timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import sqlite_utils

from tenpo.edge import db as edge_db
from tenpo.edge.ble import service as beacon_service
from tenpo.edge.config import StoreConfig
from tenpo.edge.inspection import service as reader_service
from tenpo.edge.outbox import set_meta
from tenpo.edge.scheduler import StoreJobs, StoreScheduler, local_timezone
from tenpo.edge.sync import ProgressCallback, SyncLink
from tenpo.shared import crypto, sd_notify

log = logging.getLogger(__name__)


# A service the agent runs beside the sync link: run_service(config, stop, report) returns at once
# when its part of the config is absent. A crash is logged, reported in `tenpo edge status` and
# retried with back-off; it never stops the agent or another service.
ServiceRunner = Callable[[StoreConfig, asyncio.Event, Callable[..., None]], Awaitable[None]]
SERVICES: tuple[tuple[str, ServiceRunner], ...] = (
    ("readers", reader_service.run_service),
    ("beacons", beacon_service.run_service),
)


def ensure_keys(config: StoreConfig) -> bool:
    """Create the store key pair beside the database on first start; True if it was created."""
    if config.private_key.exists():
        return False
    crypto.generate_keypair(config.private_key, config.public_key)
    return True


def init_store(config: StoreConfig) -> sqlite_utils.Database:
    db = edge_db.connect(config.database, create=True)
    if ensure_keys(config):
        log.info("new store key pair: %s", config.public_key)
    return db


class ServiceReporter:
    """Writes a service's state where `tenpo edge status` (another process) can read it."""

    def __init__(self, db: sqlite_utils.Database, name: str) -> None:
        self._db = db
        self.name = name

    def __call__(self, state: str, **detail: object) -> None:
        record = json.dumps({"state": state, "at": time.time(), **detail}, ensure_ascii=False, default=str)
        with edge_db.transaction(self._db) as conn:
            set_meta(conn, f"service.{self.name}", record)


async def _supervise(name: str, run_service: ServiceRunner, config: StoreConfig, stop: asyncio.Event,
                     db: sqlite_utils.Database) -> None:  # fmt: skip
    report = ServiceReporter(db, name)
    delay = 1.0
    while not stop.is_set():
        try:
            await run_service(config, stop, report)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a reader or adapter fault must not take the store offline
            log.exception("service %s failed; restarting in %.0fs", name, delay)
            report("failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, 60.0)


INTEGRITY_META_KEY = "integrity"


def record_integrity(db: sqlite_utils.Database, problems: list[str]) -> None:
    """Keep the last quick_check for `tenpo edge status`; a file too damaged to take the note is left alone."""
    record = json.dumps({"ok": not problems, "problems": problems, "at": time.time()}, ensure_ascii=False)
    try:
        with edge_db.transaction(db) as conn:
            set_meta(conn, INTEGRITY_META_KEY, record)
    except sqlite3.DatabaseError as exc:
        log.warning("could not record the integrity check: %s", exc)


def check_store(config: StoreConfig) -> sqlite_utils.Database:
    """Open (creating on first start) the replica, refusing to run on a damaged one."""
    problems = edge_db.check_integrity(config.database) if config.database.exists() else []
    db = init_store(config)
    record_integrity(db, problems)
    if problems:
        db.conn.close()
        raise edge_db.damaged(config.database, problems)
    return db


async def run_agent(
    config: StoreConfig, stop: asyncio.Event | None = None, on_snapshot_progress: ProgressCallback | None = None
) -> None:
    db = check_store(config)
    key = crypto.load_private_key(config.private_key)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    link = SyncLink(config, db, key, on_snapshot_progress)  # first: a bad TLS file stops the agent here
    # Jobs with run times kept in the replica; catching up missed runs must not hold up the link.
    scheduler = StoreScheduler(db, StoreJobs(config, db).schedule(local_timezone()), local_timezone())
    scheduler_start = asyncio.create_task(scheduler.start(), name="scheduler")
    log.info("store %s (%s) agent starting; database %s", config.store_id, config.name, Path(config.database))
    services = [
        asyncio.create_task(_supervise(name, run_service, config, stop, edge_db.connect(config.database)), name=name)
        for name, run_service in SERVICES
    ]
    # systemd (Type=notify): READY once link.run has started connecting and first waits (call_soon runs
    # then); WATCHDOG=1 from a loop task, so a wedged loop stops pinging and is restarted.
    loop.call_soon(sd_notify.notify, "READY=1")
    watchdog = sd_notify.start_watchdog()
    sd_notify.schedule_test_block()
    try:
        await link.run(stop)
    finally:
        sd_notify.notify("STOPPING=1")
        if watchdog is not None:
            watchdog.cancel()
        stop.set()
        done, pending = await asyncio.wait(services, timeout=3.0) if services else (set(), set())
        for task in pending:
            task.cancel()
        scheduler_start.cancel()
        scheduler.shutdown()
        db.conn.close()
        log.info("store %s agent stopped", config.store_id)
