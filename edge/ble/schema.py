"""Beacon tables in the store database (edge migration 3).

Only resolved members and registered zone beacons are stored, never a Bluetooth address:

- ``ble_visits``: one row per member visit (arrived, left, dwell), the rows the clerk terminal shows.
- ``ble_zone_stays``: a member or zone beacon in a zone (entered, left, dwell).
- ``ble_coupons``: coupon rules that fired.
- ``ble_inbox``: advertisements queued by `tenpo ble replay` for the running agent (addresses
  blanked before they are written), consumed in id order and deleted with the events they cause.

Rows older than the registry's ``retention_days`` are deleted by the agent (``prune``).
"""

from __future__ import annotations

import sqlite3

import sqlite_utils

# Where this area refers to a member id: a member merge (provisional id -> HQ's id) must rewrite these.
MEMBER_REFERENCES: tuple[tuple[str, str], ...] = (
    ("ble_visits", "member_id"),
    ("ble_coupons", "member_id"),
    ("ble_zone_stays", "member_id"),
)


def migrate(db: sqlite_utils.Database) -> bool:
    conn = db.conn
    conn.execute(
        """CREATE TABLE ble_visits (
            visit_id TEXT PRIMARY KEY,
            member_id TEXT NOT NULL,
            arrived_at REAL NOT NULL,
            left_at REAL,                -- NULL while the member is in the store
            dwell_s REAL,
            interrupted INTEGER NOT NULL DEFAULT 0,  -- closed because the agent stopped mid-visit
            source TEXT NOT NULL DEFAULT 'scan')  -- 'scan', or 'replay' for `tenpo ble replay`"""
    )
    conn.execute("CREATE INDEX ble_visits_member ON ble_visits(member_id, arrived_at)")
    conn.execute("CREATE INDEX ble_visits_arrived ON ble_visits(arrived_at)")
    conn.execute(
        """CREATE TABLE ble_zone_stays (
            stay_id TEXT PRIMARY KEY,
            zone TEXT NOT NULL,
            subject_kind TEXT NOT NULL,  -- 'member' or 'beacon'
            subject_id TEXT NOT NULL,    -- member id or the zone beacon's registry name
            member_id TEXT,              -- set when subject_kind = 'member'
            entered_at REAL NOT NULL,
            left_at REAL,
            dwell_s REAL)"""
    )
    conn.execute("CREATE INDEX ble_zone_stays_entered ON ble_zone_stays(entered_at)")
    conn.execute(
        """CREATE TABLE ble_coupons (
            coupon_id TEXT PRIMARY KEY,
            member_id TEXT NOT NULL,
            rule TEXT NOT NULL,
            visit_id TEXT,
            triggered_at REAL NOT NULL)"""
    )
    conn.execute("CREATE INDEX ble_coupons_triggered ON ble_coupons(triggered_at)")
    conn.execute(
        """CREATE TABLE ble_inbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            replay TEXT NOT NULL,        -- one id per `tenpo ble replay` run
            feed_at REAL NOT NULL,       -- wall time at which to feed it (the replay's pace)
            shift_s REAL NOT NULL,       -- added to the recorded t to place the visit in time
            line TEXT,                   -- a recording line; NULL marks the end of the replay
            created_at REAL NOT NULL)"""
    )
    return True


def prune(conn: sqlite3.Connection, now: float, retention_days: int) -> int:
    """Delete visits, zone stays and coupons past retention, and everything about erased members.

    Call inside a transaction; returns the number of rows deleted.
    """
    cutoff = now - retention_days * 86400.0
    erased = "SELECT member_id FROM members WHERE erased = 1"
    deleted = 0
    for sql, params in (
        (f"DELETE FROM ble_visits WHERE arrived_at < ? OR member_id IN ({erased})", (cutoff,)),
        (f"DELETE FROM ble_coupons WHERE triggered_at < ? OR member_id IN ({erased})", (cutoff,)),
        (f"DELETE FROM ble_zone_stays WHERE entered_at < ? OR member_id IN ({erased})", (cutoff,)),
    ):
        deleted += conn.execute(sql, params).rowcount
    return deleted
