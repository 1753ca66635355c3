"""The sending store's record of its transfers (edge migration 17, registered in tenpo.edge.db)."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> bool:
    db.execute(
        """CREATE TABLE IF NOT EXISTS transfers_out (
            transfer_id TEXT PRIMARY KEY, to_store TEXT NOT NULL, sku TEXT NOT NULL, gtin TEXT NOT NULL,
            qty INTEGER NOT NULL, epcs TEXT NOT NULL, clerk_id TEXT, created_at REAL NOT NULL, store_seq INTEGER)"""
    )
    return True
