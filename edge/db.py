"""The store's SQLite file: connection settings, transactions and numbered migrations.

The file is the truth on the edge. Every business write and the outbox event reporting it commit
in one ``BEGIN IMMEDIATE`` transaction; ``synchronous=FULL`` because it holds money and stock.
A file that cannot be used as it is (missing, not SQLite, damaged, full, written by a newer tenpo)
raises :class:`StoreDatabaseError`: one line naming the file, never a traceback.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from tenpo.edge import audit_chain, deliveries_schema, products_schema, transfers_schema
from tenpo.edge import loyalty as loyalty_schema  # migration 11 (H7)
from tenpo.edge import recommendations as recommendations_schema  # migration 13 (H6)
from tenpo.edge.ble import ids as beacon_ids  # migration 14 (H5)
from tenpo.edge.ble import schema as ble_schema
from tenpo.edge.checkout import schema as checkout_schema
from tenpo.edge.checkout import schema_returns
from tenpo.edge.clerk import schema as clerk_schema
from tenpo.edge.clerk import schema_actions as clerk_actions_schema  # migration 15 (H3)
from tenpo.edge.inspection import schema as inspection_schema
from tenpo.edge.membership import schema as membership_schema
from tenpo.edge.membership import sealing as membership_sealing
from tenpo.edge.reservations import schema as reservations_schema
from tenpo.shared.errors import TenpoError
from tenpo.shared.filemodes import private_database

SCHEMA_VERSION_KEY = "schema_version"

# Primary result codes that mean the file or the disk, not the statement, is at fault.
_STORAGE_FAULTS = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_IOERR,
     sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY}
)  # fmt: skip
_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class StoreDatabaseError(TenpoError, sqlite3.DatabaseError):
    """The store database cannot be used as it is. Still a sqlite3.DatabaseError for code that catches those."""


def _primary_code(exc: BaseException) -> int:
    return int(getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


def is_storage_fault(exc: BaseException) -> bool:
    """A full disk, a damaged or foreign file, an I/O error: what a user must act on, not a bug."""
    return isinstance(exc, sqlite3.DatabaseError) and _primary_code(exc) in _STORAGE_FAULTS | _BUSY


def explain(exc: sqlite3.Error, path: Path | str | None = None) -> str:
    """One line saying what happened to the database and what to do about it."""
    where = f"store database {path}" if path else "the store database"
    code = _primary_code(exc)
    if code == sqlite3.SQLITE_FULL:
        return f"{where}: the disk is full ({exc}); nothing was saved: free some space and try again"
    if code == sqlite3.SQLITE_CORRUPT:
        return (f"{where} is damaged ({exc}): `tenpo edge check` lists the problems; restore it from a backup "
                "or move it aside so `tenpo edge run` bootstraps a new one from HQ")  # fmt: skip
    if code == sqlite3.SQLITE_NOTADB:
        return f"{where} is not a SQLite database ({exc}): check store.database in the config"
    if code in _BUSY:
        return f"{where} is locked by another process ({exc}); try again"
    if code == sqlite3.SQLITE_READONLY:
        return f"{where} cannot be written ({exc}): check the file's owner and permissions"
    return f"{where}: cannot read or write the file ({exc})"


def database_path(conn: sqlite3.Connection) -> str | None:
    """The file behind a connection (from SQLite's own bookkeeping, so it works on a damaged file)."""
    try:
        row = conn.execute("PRAGMA database_list").fetchone()
    except sqlite3.Error:
        return None
    return str(row[2]) if row and row[2] else None


@contextmanager
def _explained(where: Callable[[], Path | str | None]) -> Iterator[None]:
    """Turn a storage fault into a StoreDatabaseError naming the file; other errors pass unchanged."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, StoreDatabaseError) or not is_storage_fault(exc):
            raise
        raise StoreDatabaseError(explain(exc, where())) from exc


def connect(path: Path | str, busy_timeout_ms: int = 10_000, *, create: bool = True) -> sqlite_utils.Database:
    """Open the store database with the durability settings and migrate it.

    ``create=False`` (every command but ``init`` and ``run``) refuses a file that does not exist,
    so a mistyped path says so instead of leaving an empty replica behind.
    """
    memory = str(path) == ":memory:"
    target = str(path)
    if not memory:
        path = Path(path)
        if create:
            private_database(path)  # 0600 before SQLite opens it: its -wal and -shm take the same mode
        else:
            must_exist(path)
            # mode=rw: the file may vanish between the check and the open; this open never creates it.
            target = f"{path.resolve().as_uri()}?mode=rw"
    with _explained(lambda: path):
        conn = sqlite3.connect(target, isolation_level=None, timeout=busy_timeout_ms / 1000,
                               check_same_thread=False, uri=target.startswith("file:"))  # fmt: skip
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            # Freed pages are zeroed, so a deleted or re-sealed value leaves no old bytes in the file (issue 14).
            conn.execute("PRAGMA secure_delete = ON")
            db = sqlite_utils.Database(conn)
            migrate(db)
            membership_sealing.vacuum_if_pending(conn)  # once, after migration 9 sealed the plaintext
        except BaseException:
            conn.close()
            raise
    return db


def must_exist(path: Path) -> None:
    if not path.is_file():
        raise StoreDatabaseError(f"store database {path} does not exist: check store.database in the config, "
                                 "or create it with `tenpo edge init`")  # fmt: skip


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at BEGIN so two processes never deadlock upgrading a read lock.

    Whatever fails (the body, or COMMIT itself: busy, disk full, a deferred constraint), the
    transaction is rolled back, so the connection is never left inside one.
    """
    conn = db.conn
    with _explained(lambda: database_path(conn)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            _roll_back(conn)
            raise


def _roll_back(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back by itself (disk full, I/O error); a second ROLLBACK would
    # raise and hide the error that matters.
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def damaged(path: Path | str, problems: list[str]) -> StoreDatabaseError:
    """The one line for a file quick_check found problems in."""
    return StoreDatabaseError(
        f"store database {path} is damaged ({problems[0]}; {len(problems)} problem(s) in all, `tenpo edge check` "
        "lists them): restore it from a backup, or move it aside so `tenpo edge run` bootstraps a new one from HQ"
    )


def check_integrity(path: Path | str, max_problems: int = 20) -> list[str]:
    """``PRAGMA quick_check`` on its own read-only connection: the problems found, [] when sound."""
    try:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return [str(exc)]
    try:
        rows = conn.execute(f"PRAGMA quick_check({int(max_problems)})").fetchall()
    except sqlite3.Error as exc:  # damage can stop the check itself
        return [str(exc)]
    finally:
        conn.close()
    problems = [str(row[0]) for row in rows]
    return [] if problems == ["ok"] else problems


def schema_version(db: sqlite_utils.Database) -> int:
    if not db["schema_migrations"].exists():
        return 0
    row = db.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


# ---------------------------------------------------------------------------- migrations


def _m001_core(db: sqlite_utils.Database) -> None:
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("counters").create({"name": str, "value": int}, pk="name", not_null={"value"})
    db.table("members").create(
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
        db.table("members").create_index([column], index_name=f"members_{column}")
    # Mailbox names are case-sensitive on paper, never in practice: look them up without case.
    db.execute("CREATE INDEX members_email ON members(email COLLATE NOCASE)")
    db.table("products").create(
        {"sku": str, "jan": str, "name": str, "price": int, "tax_class": str, "version": int, "updated_at": float},
        pk="sku",
        not_null={"name", "price", "tax_class", "version"},
        defaults={"version": 0},
    )
    db.table("products").create_index(["jan"], index_name="products_jan")
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
    db.table("remote_stock").create(
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


def _core(db: sqlite_utils.Database) -> bool:
    _m001_core(db)
    return True


# Numbers are fixed once released; each area owns the migration it registers here. A step returns
# False while its area has nothing to create, so the number stays free until it does.
MIGRATIONS: list[tuple[int, str, Callable[[sqlite_utils.Database], bool]]] = [
    (1, "members, products, ledgers, outbox", _core),
    (2, "sales, receipts, receipt numbers", checkout_schema.migrate),
    (3, "beacon arrivals and visits", ble_schema.migrate),
    (4, "advance ship notices and dock inspections", inspection_schema.migrate),
    (5, "member merges and the personal-data audit log", membership_schema.migrate),
    (6, "clerks, sign-in and roles", clerk_schema.migrate),
    (7, "partial returns: several refunds per receipt", schema_returns.migrate),
    (8, "manager approvals at the till; members by a phone's last four digits", clerk_schema.migrate_approvals),
    # issue 14 (H2): personal data sealed with AES-256-GCM, blind indexes and name search tokens
    (9, "members' personal data encrypted at rest, blind indexes, search tokens", membership_sealing.migrate),
    (10, "the personal-data audit log hash-chained and append-only (issue 14)", audit_chain.migrate),
    (11, "member rank, multiplier and points lots from HQ, offline too (issue 17)", loyalty_schema.migrate),  # H7
    (12, "reservations held here: available = on hand - reserved (issue 18)", reservations_schema.migrate),  # H8
    (13, "recommendations per member from HQ, for the clerk's profile offline (issue 17)", recommendations_schema.migrate),  # H6
    (14, "beacon rotating ids from HQ instead of members' secrets (issue 14)", beacon_ids.migrate),  # H5
    (15, "store commands recorded with the clerk who ran them", clerk_actions_schema.migrate),  # H3
    (16, "product variants: style, colour, size", products_schema.migrate_variants),
    (17, "store-to-store transfers sent from here", transfers_schema.migrate),
    (19, "beacon day keys from HQ replace the stored identifier lists (issue 14)", beacon_ids.migrate_keys),  # H12
    (20, "reservations collected at another store: in transit by transfer (issue 18)", reservations_schema.migrate_transit),
    (21, "home deliveries ordered here or shipped from here (issue 18 §7)", deliveries_schema.migrate),
]



def migrate(db: sqlite_utils.Database) -> int:
    """Apply the numbered migrations not yet applied, each in its own transaction."""
    conn = db.conn
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at REAL)"
    )
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    newest_known = MIGRATIONS[-1][0]
    if max(applied, default=0) > newest_known:
        # A newer tenpo wrote this file; an older one must not write rows shaped the old way into it.
        raise StoreDatabaseError(
            f"store database {database_path(conn) or '(in memory)'}: schema version {max(applied)} is newer than this "
            f"tenpo understands ({newest_known}): upgrade tenpo before opening it"
        )
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
