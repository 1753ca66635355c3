"""`tenpo edge run`: the store agent. Owns the sync link (and, as configured, readers and beacons).

SIGTERM or SIGINT stops it cleanly: the loop finishes the message in hand, says goodbye to the
broker (death message) and closes the database, well inside systemd's stop timeout.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import sqlite_utils
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from tenpo.edge import db as edge_db
from tenpo.edge.config import StoreConfig
from tenpo.edge.sync import ProgressCallback, SyncLink
from tenpo.shared import crypto

log = logging.getLogger(__name__)

DEAD_LETTER_RETENTION_DAYS = 90


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
    try:
        await link.run(stop)
    finally:
        scheduler.shutdown(wait=False)
        db.conn.close()
        log.info("store %s agent stopped", config.store_id)
