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


def migrate_transit(db: sqlite_utils.Database) -> bool:
    """Edge migration 20: a reservation collected at another store. ``in_transit`` holds nothing here: at the
    store that sent it the units left with transfer ``transfer_id``; at the pickup store they have not yet
    passed its dock. SQLite cannot widen a CHECK in place, so the table is rebuilt (rows kept as they are)."""
    db.execute("ALTER TABLE reservations RENAME TO reservations_v12")
    db.execute("DROP INDEX reservations_sku_state")
    db.execute(
        """CREATE TABLE reservations (
            reservation_id TEXT PRIMARY KEY,
            sku TEXT NOT NULL,
            qty INTEGER NOT NULL CHECK (qty > 0),
            channel TEXT NOT NULL,           -- web, app, store:S002 (another store's clerk) ...
            member_id TEXT,
            customer TEXT,
            pickup_store TEXT,
            state TEXT NOT NULL CHECK (state IN ('requested', 'confirmed', 'ready', 'in_transit', 'picked_up',
                                                 'rejected', 'expired', 'cancelled')),
            reason TEXT,
            receipt_no TEXT,                 -- the sale that consumed it
            expires_at REAL,
            version INTEGER NOT NULL DEFAULT 0,  -- HQ change seq of the last change applied
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            transfer_id TEXT,                -- the transfer carrying it to the pickup store
            shipped_from TEXT)               -- the store that sent it"""
    )
    columns = ("reservation_id, sku, qty, channel, member_id, customer, pickup_store, state, reason, receipt_no,"
               " expires_at, version, created_at, updated_at")  # fmt: skip
    db.execute(f"INSERT INTO reservations({columns}) SELECT {columns} FROM reservations_v12")
    db.execute("DROP TABLE reservations_v12")
    db.execute("CREATE INDEX reservations_sku_state ON reservations(sku, state)")
    db.execute("CREATE INDEX reservations_transfer ON reservations(transfer_id) WHERE transfer_id IS NOT NULL")
    return True
