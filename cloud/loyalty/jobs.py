"""The nightly loyalty jobs beside each aggregator (tenpo.cloud.scheduler): at 00:30 JST the points whose last
good day was yesterday expire, then every member's rank is computed on the rolling spend through today. Both
are idempotent (cloud/loyalty/store.py), so two aggregators running them write nothing twice."""

from __future__ import annotations

import logging
import time

from apscheduler.schedulers.background import BackgroundScheduler

from tenpo.cloud.db import Central
from tenpo.cloud.loyalty.store import run_expiry, run_ranks, today_jst
from tenpo.shared.errors import UserError

log = logging.getLogger(__name__)


def nightly(db_url: str, now: float | None = None) -> None:
    """Expiry as of today (JST), then ranks; a failure is logged and tomorrow's run catches up."""
    db = Central(db_url, create=False)
    try:
        day = today_jst(now or time.time())
        report = run_expiry(db, day)
        log.info("loyalty expiry as of %s: %d points from %d members", day, report.expired, report.members)
        rows = run_ranks(db, day)
        log.info("loyalty ranks as of %s: %d members", day, len(rows))
    except UserError as exc:
        log.warning("loyalty jobs: %s", exc)
    except Exception:  # logged; the aggregator keeps applying
        log.exception("loyalty jobs failed")
    finally:
        db.close()


def add_loyalty_jobs(scheduler: BackgroundScheduler, db_url: str) -> None:
    scheduler.add_job(nightly, "cron", args=[db_url], hour=0, minute=30, timezone="Asia/Tokyo", id="hq_loyalty",
                      coalesce=True, max_instances=1, misfire_grace_time=6 * 3600)  # fmt: skip
