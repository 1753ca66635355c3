"""HQ's scheduled refresh of members' beacon identifiers (issue 14; tenpo.cloud.beacons).

Every hour each aggregator's scheduler looks at how far ahead the last refresh issued identifiers
(``beacon_issue``, cloud migration 15). Once that is less than REFRESH_MARGIN_WINDOWS (12 hours)
away, it records a fresh ``member.beacon_ids`` for every member with a secret, in transactions of
``batch`` members, and moves the horizon. A store that stays offline longer than the 24 hours
issued stops recognising members' phones until it is back; selling is not affected.
"""

from __future__ import annotations

import logging
import time

from apscheduler.schedulers.background import BackgroundScheduler

from tenpo.cloud.beacons import ids_change
from tenpo.cloud.changes import record_changes
from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple
from tenpo.shared.beacon_id import ISSUE_WINDOWS, REFRESH_MARGIN_WINDOWS, issue_start, window_of

log = logging.getLogger(__name__)


def issued_until(db: Central) -> int | None:
    value = db.scalar("SELECT until_window FROM beacon_issue WHERE name = 'all'")
    return None if value is None else int(value)


def refresh_beacon_ids(db: Central, now: float, *, force: bool = False, batch: int = 1000) -> int:
    """Send fresh identifiers for every member when the issued ones run short; how many members."""
    current = window_of(now)
    horizon = issued_until(db)
    if not force and horizon is not None and horizon - current >= REFRESH_MARGIN_WINDOWS:
        return 0
    sent, after = 0, ""
    while True:
        with db.transaction():
            found = db.all(
                "SELECT member_id, beacon_secret FROM members WHERE member_id > ? AND erased = 0"
                " AND beacon_secret IS NOT NULL ORDER BY member_id LIMIT ?",
                (after, batch),
            )
            changes: list[ChangeTuple] = [c for m, s in found if (c := ids_change(m, s, now)) is not None]
            record_changes(db, changes, now)
        sent += len(changes)
        if len(found) < batch:
            break
        after = found[-1][0]
    until = issue_start(now) + ISSUE_WINDOWS - 1
    with db.transaction():
        db.execute(
            "INSERT INTO beacon_issue(name, until_window) VALUES ('all', ?)"
            " ON CONFLICT (name) DO UPDATE SET until_window = excluded.until_window",
            (until,),
        )
    log.info("beacon ids: sent %d member(s) identifiers up to window %d", sent, until)
    return sent


def add_beacon_job(scheduler: BackgroundScheduler, db_url: str) -> None:
    """Hourly, and once at start (a new HQ, or one that was down, issues before stores run out)."""

    def job() -> None:
        db = Central(db_url, create=False)
        try:
            refresh_beacon_ids(db, time.time())
        except Exception:  # logged; the next hour tries again
            log.exception("beacon id refresh failed")
        finally:
            db.close()

    scheduler.add_job(job, "interval", hours=1, id="beacon_ids", coalesce=True, max_instances=1)
    scheduler.add_job(job, "date", id="beacon_ids_start", misfire_grace_time=3600)
