"""HQ's scheduled jobs: retention of the central database, run beside each aggregator.

APScheduler's BackgroundScheduler runs the jobs in its own thread, each with its own connection to
the central database (never the aggregator's). Several aggregators may run the same job: every
statement is idempotent, so two runs delete nothing twice and nothing extra.

Retention (``--retention-days`` on `tenpo cloud run`, defaults below), documented in
docs/operations.md:

- dead letters an operator closed (status other than ``open``) older than ``dead_letters_days`` (90)
  are deleted; open ones are kept until someone decides about them;
- applied events older than ``events_days`` (400: a full year of audits and a margin) are deleted,
  except the newest event of every (store, stream), which HQ needs to recognise a replay of an ended
  stream, and events an open dead letter refers to, which `reapply` needs. Their effects (ledgers, sales,
  visits) stay; HQ deduplicates by each store's applied mark, not by these rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler

from tenpo.cloud.analytics.job import add_analytics_job
from tenpo.cloud.beacon_jobs import add_beacon_job
from tenpo.cloud.channel.jobs import add_points_hold_job
from tenpo.cloud.db import Central
from tenpo.cloud.loyalty.jobs import add_loyalty_jobs

log = logging.getLogger(__name__)
DAY = 86400.0
EVENTS_DAYS = 400  # a full year of audits and a margin
DEAD_LETTERS_DAYS = 90


@dataclass(frozen=True, slots=True)
class HqRetention:
    events_days: int = EVENTS_DAYS
    dead_letters_days: int = DEAD_LETTERS_DAYS


def purge_hq(db: Central, retention: HqRetention, now: float) -> dict[str, int]:
    """Delete what is past retention; the number of rows deleted per table."""
    with db.transaction():
        letters = db.execute(
            "DELETE FROM dead_letters WHERE status != 'open' AND received_at < ?",
            (now - retention.dead_letters_days * DAY,),
        ).rowcount
        events = db.execute(
            "DELETE FROM events WHERE applied_at < ?"
            " AND seq < (SELECT max(e.seq) FROM events e WHERE e.store_id = events.store_id AND e.stream = events.stream)"
            " AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.status = 'open' AND d.store_id = events.store_id"
            " AND d.event_seq = events.seq)",
            (now - retention.events_days * DAY,),
        ).rowcount
    deleted = {"dead_letters": int(letters), "events": int(events)}
    if any(deleted.values()):
        log.info("HQ retention: deleted %d closed dead letter(s) and %d old applied event(s)", letters, events)
    return deleted


def start_hq_scheduler(db_url: str, retention: HqRetention, hour: int = 4) -> BackgroundScheduler:
    """Retention once a day at ``hour`` (local time), on its own connection, in the scheduler's thread."""

    def retention_job() -> None:
        db = Central(db_url, create=False)
        try:
            purge_hq(db, retention, time.time())
        except Exception:  # logged; the aggregator keeps applying and tomorrow's run tries again
            log.exception("HQ retention failed")
        finally:
            db.close()

    scheduler = BackgroundScheduler()
    scheduler.add_job(retention_job, "cron", hour=hour, minute=15, id="hq_retention", coalesce=True,
                      max_instances=1, misfire_grace_time=6 * 3600)  # fmt: skip
    add_loyalty_jobs(scheduler, db_url)  # issue 17 (H7): nightly expiry, then ranks, in JST
    add_analytics_job(scheduler, db_url)  # issue 17 (H6): analytics folded in every 10 minutes
    add_beacon_job(scheduler, db_url)  # issue 14 (H5, H12): the next day's beacon keys, daily in JST
    add_points_hold_job(scheduler, db_url)  # issue 18 (H9): web points holds nobody captured expire
    scheduler.start()
    return scheduler
