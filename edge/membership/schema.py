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
    return True
