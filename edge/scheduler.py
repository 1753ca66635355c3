"""The store agent's scheduler: APScheduler on the agent's event loop, with run times kept in the replica.

Jobs are coroutines, so the ones that use the agent's connection run on the loop between its other
uses of it; the backup runs in a worker thread with its own connections. Each job's last run is kept in
the ``meta`` table (``job.<id>``): at start the scheduler asks each job's trigger whether a run fell due
between that time and now (the box was off, the agent was stopped) and runs such a job once before
scheduling it as usual, so missed runs are caught up coalesced. A job never run is not overdue: the first
nightly backup waits for its night.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import sqlite_utils
import tzlocal
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from tenpo.edge import db as edge_db
from tenpo.edge import jobs
from tenpo.edge.backup import backup_settings, backup_store
from tenpo.edge.config import StoreConfig
from tenpo.edge.inspection.config import dock_settings
from tenpo.edge.outbox import get_meta, set_meta
from tenpo.shared.errors import ConfigError

log = logging.getLogger(__name__)

JOB_META_PREFIX = "job."
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    trigger: BaseTrigger
    run: Callable[[], Awaitable[Any]]


def last_run(conn: Any, job_id: str) -> dict[str, Any] | None:
    text = get_meta(conn, JOB_META_PREFIX + job_id)
    return json.loads(text) if text else None


def missed(trigger: BaseTrigger, since: float, now: float, tz: tzinfo) -> bool:
    """True if ``trigger`` fired at least once after ``since`` and up to ``now`` (both unix seconds)."""
    after = datetime.fromtimestamp(since, tz) + timedelta(microseconds=1)
    due = trigger.get_next_fire_time(None, after)
    return due is not None and due.timestamp() <= now


class StoreJobs:
    """The agent's jobs, bound to its config, its connection and a clock."""

    def __init__(self, config: StoreConfig, db: sqlite_utils.Database, clock: Clock = jobs.wall_clock) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.settings = jobs.job_settings(config)
        self.backup = backup_settings(config)

    async def nightly_backup(self) -> dict[str, Any]:
        # A worker thread with its own connections: the copy takes seconds on a big replica and the loop
        # (sync link, watchdog) must keep running; SQLite's backup step releases the GIL.
        result = await asyncio.to_thread(backup_store, self.config.database, self.config.store_id,
                                         self.backup.directory, self.backup.keep, self.clock())  # fmt: skip
        return result.as_json()

    async def retention(self) -> dict[str, int]:
        try:
            reports: Path | None = dock_settings(self.config).reports.directory
        except ConfigError:  # a dock section that does not parse is the readers' problem, not retention's
            reports = None
        with edge_db.transaction(self.db) as conn:
            deleted = jobs.purge(conn, self.settings, self.clock(), reports)
        if any(deleted.values()):
            log.info("retention: deleted %s", ", ".join(f"{n} {what}" for what, n in deleted.items() if n))
        return deleted

    async def outbox_age(self) -> dict[str, Any] | None:
        with edge_db.transaction(self.db) as conn:
            return jobs.outbox_age_alarm(conn, self.settings, self.clock())

    async def cert_expiry(self) -> dict[str, Any] | None:
        with edge_db.transaction(self.db) as conn:
            return jobs.cert_expiry_alarm(conn, self.config.tls.cert, self.settings, self.clock())

    async def stock_snapshot(self) -> dict[str, int]:
        with edge_db.transaction(self.db) as conn:
            return {"parts": jobs.append_stock_snapshot(conn, self.clock())}

    async def checkpoint(self) -> None:
        self.db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def schedule(self, tz: tzinfo) -> list[Job]:
        return [
            Job("backup", CronTrigger(hour=self.backup.hour, minute=0, timezone=tz), self.nightly_backup),
            Job("retention", CronTrigger(hour=4, minute=30, timezone=tz), self.retention),
            Job("stock_snapshot", CronTrigger(hour=23, minute=55, timezone=tz), self.stock_snapshot),
            Job("cert_expiry", CronTrigger(hour=9, minute=0, timezone=tz), self.cert_expiry),
            Job("outbox_age", IntervalTrigger(minutes=5, timezone=tz), self.outbox_age),
            Job("checkpoint", IntervalTrigger(hours=1, timezone=tz), self.checkpoint),
        ]


class StoreScheduler:
    """Runs ``jobs`` on the loop; records each run in the replica; catches up what was missed."""

    def __init__(self, db: sqlite_utils.Database, job_list: list[Job], tz: tzinfo, clock: Clock = jobs.wall_clock) -> None:
        self.db = db
        self.jobs = {job.id: job for job in job_list}
        self.tz = tz
        self.clock = clock
        self.apscheduler: AsyncIOScheduler | None = None

    async def run_job(self, job_id: str) -> bool:
        """Run one job now and record the outcome; a failure is logged, never raised into the loop."""
        started = self.clock()
        try:
            detail = await self.jobs[job_id].run()
            ok = True
        except Exception as exc:  # one failing job must not stop the agent or the other jobs
            log.exception("scheduled job %s failed", job_id)
            detail, ok = f"{type(exc).__name__}: {exc}", False
        record = {"last_run": started, "ok": ok, "detail": detail}
        try:
            with edge_db.transaction(self.db) as conn:
                set_meta(conn, JOB_META_PREFIX + job_id, json.dumps(record, default=str, ensure_ascii=False))
        except Exception:  # the note is for `doctor`; the run itself happened
            log.exception("could not record the run of job %s", job_id)
        return ok

    async def catch_up(self) -> list[str]:
        """Run once each job whose trigger fell due since its last run; the ids run."""
        now = self.clock()
        overdue = []
        for job_id, job in self.jobs.items():
            record = last_run(self.db.conn, job_id)
            if record is None:
                # First start with this job: it is not overdue, but from now on its due times count.
                with edge_db.transaction(self.db) as conn:
                    set_meta(conn, JOB_META_PREFIX + job_id, json.dumps({"last_run": None, "since": now}))
                continue
            since = record.get("last_run") or record.get("since") or now
            if missed(job.trigger, float(since), now, self.tz):
                overdue.append(job_id)
        for job_id in overdue:
            log.info("scheduled job %s missed a run while the agent was down: running it now", job_id)
            await self.run_job(job_id)
        return overdue

    async def start(self) -> AsyncIOScheduler:
        await self.catch_up()
        scheduler = AsyncIOScheduler(timezone=self.tz)
        for job_id, job in self.jobs.items():
            scheduler.add_job(self.run_job, job.trigger, args=[job_id], id=job_id, coalesce=True, max_instances=1,
                              misfire_grace_time=3600)  # fmt: skip
        scheduler.start()
        self.apscheduler = scheduler
        return scheduler

    def shutdown(self) -> None:
        if self.apscheduler is not None and self.apscheduler.running:
            self.apscheduler.shutdown(wait=False)


def local_timezone() -> tzinfo:
    """The box's zone (tzlocal, which APScheduler itself uses), so "03:00" follows daylight saving."""
    return tzlocal.get_localzone()


async def start_store_scheduler(config: StoreConfig, db: sqlite_utils.Database) -> StoreScheduler:
    """The agent's scheduler, started on the running loop after catching up missed runs."""
    tz = local_timezone()
    scheduler = StoreScheduler(db, StoreJobs(config, db).schedule(tz), tz)
    await scheduler.start()
    return scheduler
