"""`tenpo edge run`: the store agent. Owns the sync link (and, as configured, readers and beacons).

SIGTERM or SIGINT stops it cleanly: the loop finishes the message in hand, says goodbye to the
broker (death message) and closes the database, well inside systemd's stop timeout.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import signal
import time
from pathlib import Path

import sqlite_utils
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from tenpo.edge import db as edge_db
from tenpo.edge.config import StoreConfig
from tenpo.edge.outbox import set_meta
from tenpo.edge.sync import ProgressCallback, SyncLink
from tenpo.shared import crypto

log = logging.getLogger(__name__)

DEAD_LETTER_RETENTION_DAYS = 90

# Services the agent runs beside the sync link. Each module has
#   async def run_service(config: StoreConfig, stop: asyncio.Event, report: ServiceReporter) -> None
# and returns at once when its part of the config is absent. A crash is logged, reported in
# `tenpo edge status` and retried with back-off; it never stops the agent or another service.
SERVICES: tuple[tuple[str, str], ...] = (
    ("readers", "tenpo.edge.inspection.service"),
    ("beacons", "tenpo.edge.ble.service"),
)


def ensure_keys(config: StoreConfig) -> bool:
    """Create the store key pair beside the database on first start; True if it was created."""
    if config.private_key.exists():
        return False
    crypto.generate_keypair(config.private_key, config.public_key)
    return True


def init_store(config: StoreConfig) -> sqlite_utils.Database:
    db = edge_db.connect(config.database)
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


async def _supervise(name: str, module_name: str, config: StoreConfig, stop: asyncio.Event,
                     db: sqlite_utils.Database) -> None:  # fmt: skip
    report = ServiceReporter(db, name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        log.warning("service %s unavailable: %s", name, exc)
        return
    run_service = getattr(module, "run_service", None)
    if run_service is None:
        return
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
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, 60.0)


def _housekeeping(db: sqlite_utils.Database) -> None:
    with edge_db.transaction(db) as conn:
        conn.execute(
            "DELETE FROM dead_letters WHERE created_at < strftime('%s', 'now') - ?", (DEAD_LETTER_RETENTION_DAYS * 86400,)
        )
    db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


async def run_agent(
    config: StoreConfig, stop: asyncio.Event | None = None, on_snapshot_progress: ProgressCallback | None = None
) -> None:
    db = init_store(config)
    key = crypto.load_private_key(config.private_key)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    scheduler = AsyncIOScheduler()
    scheduler.add_job(_housekeeping, "interval", hours=1, args=[db], id="housekeeping", coalesce=True)
    scheduler.start()
    link = SyncLink(config, db, key, on_snapshot_progress)
    log.info("store %s (%s) agent starting; database %s", config.store_id, config.name, Path(config.database))
    services = [
        asyncio.create_task(_supervise(name, module, config, stop, edge_db.connect(config.database)), name=name)
        for name, module in SERVICES
    ]
    try:
        await link.run(stop)
    finally:
        stop.set()
        done, pending = await asyncio.wait(services, timeout=3.0) if services else (set(), set())
        for task in pending:
            task.cancel()
        scheduler.shutdown(wait=False)
        db.conn.close()
        log.info("store %s agent stopped", config.store_id)
