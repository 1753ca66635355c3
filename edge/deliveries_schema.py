"""Edge migration 21: home deliveries ordered here or shipped from here (tenpo.edge.deliveries, issue 18 §7)."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> bool:
    db.execute(
        """CREATE TABLE deliveries (
            reservation_id TEXT PRIMARY KEY,
            role TEXT NOT NULL CHECK (role IN ('ordered', 'ship')),
            sku TEXT NOT NULL,
            qty INTEGER NOT NULL CHECK (qty > 0),
            other_store TEXT NOT NULL,       -- ordered: the store that ships it; ship: the store that ordered it
            member_id TEXT,
            address BLOB NOT NULL,           -- sealed JSON: customer, address, phone
            clerk_id TEXT,                   -- who took the order (ordered)
            version INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL)"""
    )
    return True
