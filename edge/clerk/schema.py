"""Clerk tables in the store database (edge migrations 6 and 8).

- ``clerks``: who may sign in to the clerk terminal; the PIN only as a scrypt hash with its own salt
  and cost parameters (so the cost can be raised later without invalidating old PINs), failed
  attempts in a row and a lockout deadline.
- ``clerk_signins``: every sign-in attempt, good or bad (the store manager's record of who used the till).
- ``member_audit``: every view or export of a member's personal data, each also sent to HQ as a
  ``member.viewed`` event in the same transaction.
- ``pickup_reservations``: 取り置き requests this store sent to HQ for stock held at another store.
- ``clerk_approvals`` (8): each manager approval given on the spot, with the clerk's and the manager's names.
"""

from __future__ import annotations

import sqlite_utils

# Where this area refers to a member id: a member merge (provisional id -> HQ's id) must rewrite these.
MEMBER_REFERENCES: tuple[tuple[str, str], ...] = (
    ("member_audit", "member_id"),
    ("pickup_reservations", "member_id"),
)


def migrate(db: sqlite_utils.Database) -> bool:
    db.execute(
        """CREATE TABLE clerks (
            clerk_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('clerk', 'manager')),
            pin_hash BLOB NOT NULL,          -- hashlib.scrypt(pin, salt, n, r, p)
            pin_salt BLOB NOT NULL,
            kdf_n INTEGER NOT NULL,
            kdf_r INTEGER NOT NULL,
            kdf_p INTEGER NOT NULL,
            failed_attempts INTEGER NOT NULL DEFAULT 0,  -- in a row; a good sign-in resets it
            locked_until REAL,               -- epoch seconds; NULL: not locked
            active INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE clerk_signins (
            id INTEGER PRIMARY KEY,
            clerk_id TEXT NOT NULL,          -- as typed: unknown ids are logged too
            ok INTEGER NOT NULL,
            reason TEXT NOT NULL,            -- ok, bad_pin, locked, unknown, inactive
            at REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX clerk_signins_at ON clerk_signins(at)")
    db.execute(
        """CREATE TABLE member_audit (
            id INTEGER PRIMARY KEY,
            clerk_id TEXT NOT NULL,
            member_id TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('view', 'export')),
            at REAL NOT NULL,
            event_seq INTEGER NOT NULL)      -- outbox seq of the member.viewed event"""
    )
    db.execute("CREATE INDEX member_audit_member ON member_audit(member_id, at)")
    db.execute(
        """CREATE TABLE pickup_reservations (
            reservation_id TEXT PRIMARY KEY,
            sku TEXT NOT NULL,
            qty INTEGER NOT NULL CHECK (qty > 0),
            from_store TEXT NOT NULL,        -- the store holding the stock
            member_id TEXT,
            customer TEXT,                   -- name or phone when the customer is not a member
            clerk_id TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'requested',
            event_seq INTEGER NOT NULL,
            created_at REAL NOT NULL)"""
    )
    return True


def migrate_approvals(db: sqlite_utils.Database) -> bool:
    """Edge migration 8: the approvals log, and the index that finds a member by a phone's last four digits."""
    db.execute(
        """CREATE TABLE clerk_approvals (
            id INTEGER PRIMARY KEY,
            action TEXT NOT NULL,
            clerk_id TEXT NOT NULL,          -- who was signed in at the till
            clerk_name TEXT NOT NULL,
            manager_id TEXT NOT NULL,        -- who approved (may be the same person when a manager is signed in)
            manager_name TEXT NOT NULL,
            detail TEXT NOT NULL,            -- what was approved: receipt, SKU and qty, inspection ...
            at REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX clerk_approvals_at ON clerk_approvals(at)")
    # Customers often give only the last four digits of their phone; an expression index keeps that bounded.
    db.execute("CREATE INDEX members_phone_last4 ON members(substr(phone, -4))")
    return True
