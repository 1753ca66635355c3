"""The scheduled analytics job (tenpo.cloud.scheduler, every few minutes beside each aggregator) and
`tenpo cloud analytics refresh`: fold what is new into the tables, then refresh and send the
recommendations of the members it touched and of the oldest batch."""

from __future__ import annotations

import logging
import time
from typing import Any

from tenpo.cloud.db import Central

from . import recs
from .config import AnalyticsConfig, load_config
from .refresh import full_refresh, incremental_refresh

log = logging.getLogger(__name__)
JOB_MINUTES = 10
LOCK_KEY = 0x7E4E0A11  # PostgreSQL advisory lock: one aggregator refreshes at a time


def refresh(db: Central, config: AnalyticsConfig, full: bool = False, send: bool = True,
            now: float | None = None) -> dict[str, Any]:  # fmt: skip
    """One refresh; what it did, as `refresh --json` prints it."""
    report = full_refresh(db, config) if full else incremental_refresh(db, config)
    result = report.as_json()
    if send:
        started = time.perf_counter()
        members = sorted(report.touched) if not full else []
        stale = recs.stale_members(db, config.recommend_batch)
        with db.transaction():
            result["recommendations_sent"] = recs.publish(db, config, {*members, *stale}, now)
        result["recommendations_members"] = len({*members, *stale})
        result["recommendations_seconds"] = round(time.perf_counter() - started, 3)
    return result


def analytics_job(db_url: str) -> None:
    """What the scheduler runs: never raises (logged; the next run tries again)."""
    db = Central(db_url, create=False)
    try:
        if db.dialect == "postgresql" and not db.scalar("SELECT pg_try_advisory_lock(?)", (LOCK_KEY,)):
            return  # another aggregator is refreshing
        try:
            result = refresh(db, load_config())
            if result["purchases"] or result.get("recommendations_sent"):
                log.info("analytics: %d purchase(s) folded in, %d member(s), %d recommendation(s) sent",
                         result["purchases"], result["members"], result.get("recommendations_sent", 0))  # fmt: skip
        finally:
            if db.dialect == "postgresql":
                db.execute("SELECT pg_advisory_unlock(?)", (LOCK_KEY,))
    except Exception:
        log.exception("analytics refresh failed")
    finally:
        db.close()


def add_analytics_job(scheduler: Any, db_url: str, minutes: int = JOB_MINUTES) -> None:
    """Register the refresh every ``minutes`` on an APScheduler scheduler (tenpo.cloud.scheduler)."""
    scheduler.add_job(analytics_job, "interval", args=[db_url], minutes=minutes, id="hq_analytics", coalesce=True,
                      max_instances=1, misfire_grace_time=minutes * 60)  # fmt: skip
