"""The channel API's scheduled job beside every aggregator: web points holds nobody captured expire.

Every ``TENPO_POINTS_HOLD_SWEEP_S`` seconds (default 30), on its own connection; the sweep is idempotent, so
several aggregators may run it (tenpo.cloud.channel.points.expire_holds).
"""

from __future__ import annotations

import logging
import os
import time

from apscheduler.schedulers.background import BackgroundScheduler

from tenpo.cloud.channel.points import expire_holds
from tenpo.cloud.db import Central

log = logging.getLogger(__name__)
SWEEP_S = float(os.environ.get("TENPO_POINTS_HOLD_SWEEP_S", "30"))


def add_points_hold_job(scheduler: BackgroundScheduler, db_url: str, every_s: float = SWEEP_S) -> None:
    def job() -> None:
        db = Central(db_url, create=False)
        try:
            expire_holds(db, time.time())
        except Exception:  # logged; the next run tries again
            log.exception("points hold expiry failed")
        finally:
            db.close()

    scheduler.add_job(job, "interval", seconds=max(every_s, 1.0), id="points_holds", coalesce=True, max_instances=1)
