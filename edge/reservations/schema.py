"""Edge migration 12: the reservations this store holds (HQ's ``reservation.upsert`` changes).

``state`` is this store's view; HQ's row is the authority (a ``cancelled`` or ``expired`` change releases
the units here). Active rows (``confirmed``, ``ready``) are what ``reserved`` sums; ``requested`` exists
only inside the feed transaction that decides it.
"""

from __future__ import annotations

import sqlite_utils

MEMBER_REFERENCES: tuple[tuple[str, str], ...] = (("reservations", "member_id"),)


def migrate(db: sqlite_utils.Database) -> bool:
    db.execute(
        """CREATE TABLE reservations (
            reservation_id TEXT PRIMARY KEY,
            sku TEXT NOT NULL,
            qty INTEGER NOT NULL CHECK (qty > 0),
            channel TEXT NOT NULL,           -- web, app, store:S002 (another store's clerk) ...
            member_id TEXT,
            customer TEXT,
            pickup_store TEXT,
            state TEXT NOT NULL CHECK (state IN ('requested', 'confirmed', 'ready', 'picked_up', 'rejected',
                                                 'expired', 'cancelled')),
            reason TEXT,
            receipt_no TEXT,                 -- the sale that consumed it
            expires_at REAL,
            version INTEGER NOT NULL DEFAULT 0,  -- HQ change seq of the last change applied
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX reservations_sku_state ON reservations(sku, state)")
    return True
