"""The store's SQLite file: connection settings, transactions and numbered migrations.

The file is the truth on the edge. Every business write and the outbox event reporting it commit
in one ``BEGIN IMMEDIATE`` transaction; ``synchronous=FULL`` because it holds money and stock.
"""

from __future__ import annotations

import importlib
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import sqlite_utils

SCHEMA_VERSION_KEY = "schema_version"


def connect(path: Path | str, busy_timeout_ms: int = 10_000) -> sqlite_utils.Database:
    """Open (creating if needed) the store database with the durability settings and migrate it."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=busy_timeout_ms / 1000, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    db = sqlite_utils.Database(conn)
    migrate(db)
    return db


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at BEGIN so two processes never deadlock upgrading a read lock."""
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(db: sqlite_utils.Database) -> int:
    if not db["schema_migrations"].exists():
        return 0
    row = db.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


# ---------------------------------------------------------------------------- migrations


def _m001_core(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["counters"].create({"name": str, "value": int}, pk="name", not_null={"value"})
    db["members"].create(
        {
            "member_id": str,
            "name": str,
            "name_key": str,  # normalised for prefix search
            "kana": str,
            "kana_key": str,
            "phone": str,  # E.164
            "email": str,
            "card_no": str,
            "line_user_id": str,
            "beacon_secret": str,  # hex; the member app's rotating beacon id is derived from it (docs/beacons.md)
            "consent": str,  # JSON {"marketing_email": true, ...}
            "custom": str,  # JSON, per chain, no schema change needed
            "home_store": str,
            "provisional": int,  # registered here, not yet unified by HQ
            "erased": int,
            "points_hq": int,  # balance at HQ as of the last change received
            "points_through": int,  # our own outbox seq that balance already includes
            "version": int,  # HQ change seq of the last change applied (0: local only)
            "created_at": float,
            "updated_at": float,
        },
        pk="member_id",
        not_null={"provisional", "erased", "points_hq", "points_through", "version"},
        defaults={"provisional": 0, "erased": 0, "points_hq": 0, "points_through": 0, "version": 0},
    )
    for column in ("card_no", "phone", "line_user_id", "name_key", "kana_key"):
        db["members"].create_index([column], index_name=f"members_{column}")
    # Mailbox names are case-sensitive on paper, never in practice: look them up without case.
    db.execute("CREATE INDEX members_email ON members(email COLLATE NOCASE)")
    db["products"].create(
        {"sku": str, "jan": str, "name": str, "price": int, "tax_class": str, "version": int, "updated_at": float},
        pk="sku",
        not_null={"name", "price", "tax_class", "version"},
        defaults={"version": 0},
    )
    db["products"].create_index(["jan"], index_name="products_jan")
    db.execute(
        """CREATE TABLE points_ledger (
            id INTEGER PRIMARY KEY,
            member_id TEXT NOT NULL REFERENCES members(member_id) ON UPDATE CASCADE,
            delta INTEGER NOT NULL,
            kind TEXT NOT NULL,          -- accrual, redemption, adjustment, reversal
            ref TEXT,                    -- receipt number or reason
            store_seq INTEGER,           -- outbox seq of the event that reports it
            created_at REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX points_ledger_member ON points_ledger(member_id)")
    db.execute(
        """CREATE TABLE stock_ledger (
            id INTEGER PRIMARY KEY,
            sku TEXT NOT NULL REFERENCES products(sku),
            location TEXT NOT NULL DEFAULT 'floor',
            delta INTEGER NOT NULL,
            reason TEXT NOT NULL,        -- sale, receipt, adjustment, transfer, return
            ref TEXT,
            store_seq INTEGER,
            created_at REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX stock_ledger_sku ON stock_ledger(sku, location)")
    db["remote_stock"].create(
        {"store_id": str, "sku": str, "on_hand": int, "as_of": float, "version": int},
        pk=("store_id", "sku"),
    )
    db.execute(
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY,     -- gap-free per store, from counters('outbox')
            id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            schema INTEGER NOT NULL,
            hlc INTEGER NOT NULL,
            payload TEXT NOT NULL,
            created_at REAL NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            reason TEXT NOT NULL,
            payload BLOB,
            created_at REAL NOT NULL)"""
    )


def _area(module: str) -> Callable[[sqlite_utils.Database], bool]:
    def step(db: sqlite_utils.Database) -> bool:
        return bool(importlib.import_module(module).migrate(db))

    return step


def _core(db: sqlite_utils.Database) -> bool:
    _m001_core(db)
    return True


# Numbers are fixed once released; each area owns the migration it registers here. A step returns
# False while its area has nothing to create, so the number stays free until it does.
MIGRATIONS: list[tuple[int, str, Callable[[sqlite_utils.Database], bool]]] = [
    (1, "members, products, ledgers, outbox", _core),
    (2, "sales, receipts, receipt numbers", _area("tenpo.edge.checkout.schema")),
    (3, "beacon arrivals and visits", _area("tenpo.edge.ble.schema")),
    (4, "advance ship notices and dock inspections", _area("tenpo.edge.inspection.schema")),
    (5, "member merges and the personal-data audit log", _area("tenpo.edge.membership.schema")),
    (6, "clerks, sign-in and roles", _area("tenpo.edge.clerk.schema")),
    (7, "partial returns: several refunds per receipt", _area("tenpo.edge.checkout.schema_returns")),
]



def migrate(db: sqlite_utils.Database) -> int:
    """Apply the numbered migrations not yet applied, each in its own transaction."""
    conn = db.conn
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at REAL)"
    )
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    for version, name, step in MIGRATIONS:
        if version in applied:
            continue
        with transaction(db):
            # Re-check inside the lock: another process may have migrated meanwhile.
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                continue
            if not step(db):
                continue
            conn.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, time.time()),
            )
    return schema_version(db)
