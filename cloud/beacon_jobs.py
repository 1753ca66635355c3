"""HQ's daily beacon key job (issue 14; tenpo.cloud.beacons).

Once a day at 00:05 JST (and once at start: a new HQ, or one that was down) each aggregator's
scheduler sends ``member.beacon_keys`` (today's and tomorrow's day keys) to every member whose issued
keys end before the end of tomorrow — ``beacon_issue`` (cloud migration 15) holds each member's last
issued window — in transactions of ``batch`` members. So a store holds the next day's key a whole day
before midnight JST, and a store offline for up to a day still recognises members' phones after
midnight. Two aggregators running it at once send some members twice, which is harmless: a store
replaces a day's key with the same key. One HMAC per member per day.
"""

from __future__ import annotations

import logging
import time

from apscheduler.schedulers.background import BackgroundScheduler

from tenpo.cloud.beacons import day_keys_at, keys_change, note_issued
from tenpo.cloud.changes import record_changes
from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple
from tenpo.shared.beacon_id import DAY_S, day_start, jst_day, next_day, window_of

log = logging.getLogger(__name__)
RUN_AT_JST = (0, 5)  # hour, minute


def issued_until(db: Central, member_id: str) -> int | None:
    """The last window the feed has given stores keys for, for ``member_id`` (None: none yet)."""
    value = db.scalar("SELECT until_window FROM beacon_issue WHERE name = ?", (member_id,))
    return None if value is None else int(value)


def refresh_beacon_keys(db: Central, now: float, *, batch: int = 1000) -> int:
    """Send today's and tomorrow's keys to every member not yet given tomorrow's; how many members."""
    due = window_of(day_start(next_day(jst_day(now))) + DAY_S - 1)
    sent, after = 0, ""
    keys_of = day_keys_at(now)
    while True:
        with db.transaction():
            found = db.all(
                "SELECT m.member_id, m.beacon_secret FROM members m LEFT JOIN beacon_issue b ON b.name = m.member_id"
                " WHERE m.member_id > ? AND m.erased = 0 AND m.beacon_secret IS NOT NULL"
                " AND (b.until_window IS NULL OR b.until_window < ?) ORDER BY m.member_id LIMIT ?",
                (after, due, batch),
            )
            changes: list[ChangeTuple] = [c for m, s in found if (c := keys_change(m, s, now, keys_of)) is not None]
            record_changes(db, changes, now)
            note_issued(db, changes)
        sent += len(changes)
        if len(found) < batch:
            break
        after = found[-1][0]
    if sent:
        log.info("beacon keys: sent the next day's key to %d member(s)", sent)
    return sent


def add_beacon_job(scheduler: BackgroundScheduler, db_url: str) -> None:
    """Daily at RUN_AT_JST, and once at start."""

    def job() -> None:
        db = Central(db_url, create=False)
        try:
            refresh_beacon_keys(db, time.time())
        except Exception:  # logged; the next run tries again
            log.exception("beacon key refresh failed")
        finally:
            db.close()

    hour, minute = RUN_AT_JST
    scheduler.add_job(job, "cron", hour=hour, minute=minute, timezone="Asia/Tokyo", id="beacon_keys",
                      coalesce=True, max_instances=1, misfire_grace_time=6 * 3600)  # fmt: skip
    scheduler.add_job(job, "date", id="beacon_keys_start", misfire_grace_time=3600)
