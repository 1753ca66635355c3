"""HQ's scheduled top-up of members' beacon identifiers (issue 14; tenpo.cloud.beacons).

Every 30 minutes each aggregator's scheduler sends a fresh day of identifiers (``member.beacon_ids``,
145 windows) to every member whose issued ones end less than REFRESH_MARGIN_WINDOWS (12 hours) ahead
— ``beacon_issue`` (cloud migration 15) holds each member's last issued window — in transactions of
``batch`` members. A member registered since the last run got two hours with their member.upsert, so
the next run tops them up. Two aggregators running it at once send some members twice, which is
harmless: a store replaces what it held. A store offline for more than a day stops recognising
members' phones until it is back; selling is not affected.
"""

from __future__ import annotations

import logging
import time

from apscheduler.schedulers.background import BackgroundScheduler

from tenpo.cloud.beacons import ids_change, note_issued
from tenpo.cloud.changes import record_changes
from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple
from tenpo.shared.beacon_id import REFRESH_MARGIN_WINDOWS, window_of

log = logging.getLogger(__name__)
EVERY_MINUTES = 30


def issued_until(db: Central, member_id: str) -> int | None:
    """The last window the feed has given stores for ``member_id`` (None: none yet)."""
    value = db.scalar("SELECT until_window FROM beacon_issue WHERE name = ?", (member_id,))
    return None if value is None else int(value)


def refresh_beacon_ids(db: Central, now: float, *, batch: int = 1000) -> int:
    """Send a day of identifiers to every member running short; how many members."""
    due = window_of(now) + REFRESH_MARGIN_WINDOWS
    sent, after = 0, ""
    while True:
        with db.transaction():
            found = db.all(
                "SELECT m.member_id, m.beacon_secret FROM members m LEFT JOIN beacon_issue b ON b.name = m.member_id"
                " WHERE m.member_id > ? AND m.erased = 0 AND m.beacon_secret IS NOT NULL"
                " AND (b.until_window IS NULL OR b.until_window < ?) ORDER BY m.member_id LIMIT ?",
                (after, due, batch),
            )
            changes: list[ChangeTuple] = [c for m, s in found if (c := ids_change(m, s, now)) is not None]
            record_changes(db, changes, now)
            note_issued(db, changes)
        sent += len(changes)
        if len(found) < batch:
            break
        after = found[-1][0]
    if sent:
        log.info("beacon ids: sent a day of identifiers to %d member(s)", sent)
    return sent


def add_beacon_job(scheduler: BackgroundScheduler, db_url: str) -> None:
    """Every EVERY_MINUTES, and once at start (a new HQ, or one that was down, issues before stores run out)."""

    def job() -> None:
        db = Central(db_url, create=False)
        try:
            refresh_beacon_ids(db, time.time())
        except Exception:  # logged; the next run tries again
            log.exception("beacon id refresh failed")
        finally:
            db.close()

    scheduler.add_job(job, "interval", minutes=EVERY_MINUTES, id="beacon_ids", coalesce=True, max_instances=1)
    scheduler.add_job(job, "date", id="beacon_ids_start", misfire_grace_time=3600)
