"""Edge migration 5: the member merges HQ sent down, and which rows each one rewrote (to undo it)."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> bool:
    """Create this area's tables inside the migration transaction."""
    db.execute(
        """CREATE TABLE member_merges (
            id INTEGER PRIMARY KEY,
            winner TEXT NOT NULL,
            loser TEXT NOT NULL,
            hq_merge_id INTEGER,         -- HQ's merge log id
            version INTEGER NOT NULL,    -- HQ change seq that carried it
            undone INTEGER NOT NULL DEFAULT 0,
            applied_at REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX member_merges_loser ON member_merges(loser)")
    # Rows a merge moved from the loser to the winner, by table and rowid, so an unmerge moves exactly those back.
    db.execute(
        """CREATE TABLE member_merge_moves (
            merge_ref INTEGER NOT NULL REFERENCES member_merges(id),
            table_name TEXT NOT NULL,
            row_id INTEGER NOT NULL,
            PRIMARY KEY (merge_ref, table_name, row_id))"""
    )
    # Every purchase HQ knows of for a member, from any store or channel (the feed's purchase.recorded),
    # so a clerk sees the whole history; no foreign key: a purchase may arrive before its member.
    db.execute(
        """CREATE TABLE member_purchases (
            purchase_id TEXT PRIMARY KEY,  -- "{channel}:{ref}", e.g. "store:S002:S002-00000042", "web:#1001"
            member_id TEXT NOT NULL,
            channel TEXT NOT NULL,         -- "store:S002", "web", "line", ...
            ref TEXT NOT NULL,             -- receipt or order number
            kind TEXT NOT NULL,            -- sale, refund, order
            at TEXT,                       -- ISO time of the purchase
            total INTEGER NOT NULL,
            points INTEGER NOT NULL,
            version INTEGER NOT NULL)"""
    )
    db.execute("CREATE INDEX member_purchases_member ON member_purchases(member_id, at)")
    return True
