"""HQ's central database: SQLite by default, PostgreSQL (psycopg 3) when a chain outgrows one machine.

Queries are written once with ``?`` placeholders and portable SQL (``ON CONFLICT``, ``RETURNING``);
:class:`Central` translates placeholders and the few words that differ. Schema changes are numbered
migrations applied at start-up, each in its own transaction.
"""

from __future__ import annotations

import calendar
import functools
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tenpo.cloud import authority_schema, certs, history_schema, levels_schema, products_schema
from tenpo.cloud.analytics import schema as analytics_schema
from tenpo.cloud.asn import schema as asn_schema
from tenpo.cloud.audit import schema as audit_schema
from tenpo.cloud.channel import extras_schema as channel_extras_schema  # issue 18 parts 4-5 (H9)
from tenpo.cloud.channel import schema as channel_schema
from tenpo.cloud.db_commit import BeforeCommit
from tenpo.cloud.db_types import column_types
from tenpo.cloud.hq import schema as hq_schema
from tenpo.cloud.loyalty import schema as loyalty_schema
from tenpo.cloud.members import schema as members_schema
from tenpo.cloud.members import tables as members_tables
from tenpo.cloud.sales import schema as sales_schema
from tenpo.cloud.visits import schema as visits_schema
from tenpo.shared.errors import ConfigError, MissingExtra
from tenpo.shared.filemodes import private_database


@dataclass(frozen=True, slots=True)
class DbUrl:
    dialect: str  # "sqlite" or "postgresql"
    target: str  # file path or libpq conninfo URL


def parse_db_url(url: str) -> DbUrl:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path:
            raise ConfigError(f"--db {url!r}: no file path after sqlite:///")
        return DbUrl("sqlite", path)
    scheme = url.partition("://")[0] if "://" in url else ""  # libpq judges the rest and says what is wrong
    if scheme in ("postgresql", "postgres"):
        return DbUrl("postgresql", url)
    raise ConfigError(f"--db {url!r}: use sqlite:///path or postgresql://user@host/db")


class Central(BeforeCommit):
    """One connection to the central store; not shared across threads (open one per thread)."""

    def __init__(self, url: str, create: bool = True) -> None:
        """Open (and migrate) the central database; ``create=False`` (read and operator commands) refuses
        a SQLite file that does not exist, so a mistyped path is an error rather than a new empty HQ."""
        self.url = parse_db_url(url)
        self.dialect = self.url.dialect
        self.conn: Any = _connect_sqlite(self.url, create) if self.dialect == "sqlite" else _connect_postgresql(self.url)
        self._lock = threading.Lock()
        self._months_ready: set[tuple[int, int]] = set()
        self._partitioned = False  # PostgreSQL past migration 9: the history is partitioned by month
        try:
            migrate(self)
            self._partitioned = self.dialect == "postgresql" and self.scalar(
                "SELECT to_regprocedure('tenpo_month_partition(text, text, double precision)')") is not None
            self.ensure_history_months(time.time())
        except Exception as exc:
            self.conn.close()
            if isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("psycopg"):
                # a damaged file, a read-only one, a role that may not create tables: say so in one line
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ConfigError(f"--db {self.url.dialect}: cannot use the central database ({first_line})") from None
            raise

    # ------------------------------------------------------------------ SQL helpers

    def sql(self, text: str) -> str:
        if self.dialect == "postgresql":
            return text.replace("?", "%s")
        return text

    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(self.sql(text), tuple(params))

    def executemany(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``text`` once per row. On PostgreSQL an INSERT goes as multi-row statements (one round trip
        and one statement-level trigger run per chunk, not per row); anything else is pipelined."""
        if not rows:
            return
        if self.dialect == "sqlite":
            self.conn.executemany(text, rows)
            return
        multi = _multi_row_insert(text)
        if multi is None:
            with self.conn.cursor() as cur:
                cur.executemany(self.sql(text), rows)
            return
        copy = None if self.conn.pgconn.pipeline_status else _copy_statement(multi)  # no COPY in a pipeline
        if copy is not None:  # a plain INSERT: COPY is parsed and planned once, not once per row or chunk
            with self.conn.cursor() as cur, cur.copy(copy) as stream:
                for row in rows:
                    stream.write_row(row)
            return
        per_row = len(rows[0])
        chunk = max(1, min(MULTI_ROW_CHUNK, PG_MAX_PARAMS // max(per_row, 1)))
        with _raw_cursor(self.conn) as cur:
            for start in range(0, len(rows), chunk):
                part = rows[start : start + chunk]
                cur.execute(_numbered(multi, per_row, len(part)), [value for row in part for value in row])

    def one(self, text: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return cast("tuple[Any, ...] | None", self.execute(text, params).fetchone())  # a DB-API row or None

    def all(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.execute(text, params).fetchall())

    def scalar(self, text: str, params: Sequence[Any] = (), default: Any = None) -> Any:
        row = self.one(text, params)
        return default if row is None or row[0] is None else row[0]

    @contextmanager
    def transaction(self) -> Iterator[Central]:
        with self._lock:
            self._commit_begin()  # issue 14: the audit chain is sealed last, just before COMMIT (db_commit.py)
            if self.dialect == "sqlite":
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                    self._commit_work()
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
                self.conn.execute("COMMIT")
            else:
                with self.conn.transaction():
                    yield self
                    self._commit_work()

    @contextmanager
    def savepoint(self) -> Iterator[Central]:
        """Inside a transaction: undo only what the block wrote if it raises (one event of a batch)."""
        if self.dialect == "postgresql":
            with self.conn.transaction():  # psycopg nests a transaction as a savepoint
                yield self
            return
        self.conn.execute("SAVEPOINT tenpo_part")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK TO SAVEPOINT tenpo_part")
            self.conn.execute("RELEASE SAVEPOINT tenpo_part")
            raise
        self.conn.execute("RELEASE SAVEPOINT tenpo_part")

    def ensure_history_months(self, at: float) -> None:
        """PostgreSQL: the month partitions of the history tables for ``at`` and the month after exist
        (created ahead, so rows rarely land in the default partition). Checked once per month per process."""
        if not self._partitioned:
            return
        year, month = time.gmtime(at)[:2]
        if (year, month) in self._months_ready:
            return
        following = calendar.timegm((year + month // 12, month % 12 + 1, 1, 0, 0, 0))
        with self.transaction():
            for table, column in history_schema.HISTORY_TABLES:
                for when in (at, following):
                    self.execute("SELECT tenpo_month_partition(?, ?, ?)", (table, column, when))
        self._months_ready.add((year, month))

    def lock_suffix(self) -> str:
        """Row lock for read-then-write inside a transaction (SQLite already holds the write lock)."""
        return " FOR UPDATE" if self.dialect == "postgresql" else ""

    def close(self) -> None:
        self.conn.close()


MULTI_ROW_CHUNK = 1000  # rows per multi-row INSERT: big enough to amortise a round trip, small enough to plan fast
PG_MAX_PARAMS = 65535  # the protocol's limit of bind parameters per statement
_INSERT_VALUES = re.compile(r"^(\s*INSERT\s+INTO\s.*?\sVALUES\s*)(\([^()]*\))(.*)$", re.IGNORECASE | re.DOTALL)


def _multi_row_insert(text: str) -> tuple[str, str, str] | None:
    """(head, one row's VALUES tuple, tail) of an INSERT that may take many rows in one statement; None if not.
    ``ON CONFLICT ... DO UPDATE`` stays one row per statement: two rows of one chunk hitting the same key would
    be refused ("cannot affect row a second time") where row after row they are not."""
    match = _INSERT_VALUES.match(text)
    if match is None:
        return None
    tail = match.group(3).upper()
    if "DO UPDATE" in tail or "RETURNING" in tail or "SELECT" in tail:
        return None
    return match.group(1), match.group(2), match.group(3)


_PLAIN_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)\s*\(([\w\s,]+)\)\s*VALUES\s*$", re.IGNORECASE)
_ONLY_MARKS = re.compile(r"^\(\s*\?(\s*,\s*\?)*\s*\)$")


@functools.lru_cache(maxsize=256)
def _copy_statement(multi: tuple[str, str, str]) -> str | None:
    """``COPY table (columns) FROM STDIN`` for an INSERT of parameters only, with no ON CONFLICT; else None."""
    head, values, tail = multi
    plain = _PLAIN_INSERT.match(head)
    if plain is None or tail.strip() or not _ONLY_MARKS.match(values):
        return None
    return f"COPY {plain.group(1)} ({plain.group(2).strip()}) FROM STDIN"


@functools.lru_cache(maxsize=256)
def _numbered(multi: tuple[str, str, str], per_row: int, count: int) -> str:
    """The multi-row statement for ``count`` rows with PostgreSQL's own $n placeholders: a raw cursor sends
    it as is, where psycopg would scan thousands of %s on every call."""
    head, values, tail = multi
    numbers = iter(range(1, per_row * count + 1))
    rows = (re.sub(r"\?", lambda _match: f"${next(numbers)}", values) for _ in range(count))
    return head + ", ".join(rows) + tail


def _raw_cursor(conn: Any) -> Any:
    import psycopg  # the hq extra; only a PostgreSQL connection gets here

    return psycopg.RawCursor(conn)


def _connect_sqlite(url: DbUrl, create: bool) -> sqlite3.Connection:
    path = Path(url.target)
    if not create and not path.is_file():
        raise ConfigError(
            f"--db sqlite:///{url.target}: the database does not exist (check the path; `tenpo cloud run` creates it)"
        )
    try:
        if create:
            private_database(path)  # 0600 before SQLite opens it: its -wal and -shm take the same mode
            conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        else:  # mode=rw: never create, even if the file vanished since the check
            conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, isolation_level=None, timeout=30,
                                   check_same_thread=False)  # fmt: skip
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"--db sqlite:///{url.target}: cannot open ({exc})") from None
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        what = "is not an SQLite database" if "not a database" in str(exc) else f"cannot be used ({exc})"
        raise ConfigError(f"--db sqlite:///{url.target}: {what}") from None
    return conn


def _connect_postgresql(url: DbUrl) -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise MissingExtra("a PostgreSQL central database", "hq", exc) from None
    # libpq waits for the operating system's TCP timeout (minutes) on an unreachable host unless told (None: the URL's)
    timeout = None if "connect_timeout" in url.target else 10
    try:
        return psycopg.connect(url.target, autocommit=True, connect_timeout=timeout)
    except psycopg.Error as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        first_line = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", first_line)  # libpq may quote the URL: no password
        raise ConfigError(f"--db: cannot connect to PostgreSQL ({first_line})") from None


# ---------------------------------------------------------------------------- migrations


def _types(db: Central) -> dict[str, str]:
    return column_types(db.dialect)


def _m001_core(db: Central) -> list[str]:
    t = _types(db)
    return [
        f"""CREATE TABLE stores (
            store_id TEXT PRIMARY KEY, name TEXT,
            public_key TEXT NOT NULL,
            stream TEXT,
            last_applied_seq {t['int']} NOT NULL DEFAULT 0,
            events_applied {t['int']} NOT NULL DEFAULT 0,
            dead_letters {t['int']} NOT NULL DEFAULT 0,
            online INTEGER NOT NULL DEFAULT 0,
            bdseq {t['int']} NOT NULL DEFAULT -1,
            last_seen {t['real']},
            agent_version TEXT,
            schema_version INTEGER,
            backlog {t['int']},
            oldest_pending_age_s {t['real']},
            cursor {t['int']},
            last_hlc {t['int']},
            skew_ms {t['int']},
            newest_event_hlc {t['int']},
            registered_at {t['real']} NOT NULL)""",
        f"""CREATE TABLE events (
            store_id TEXT NOT NULL REFERENCES stores(store_id),
            stream TEXT NOT NULL,
            seq {t['int']} NOT NULL,
            event_id TEXT NOT NULL,
            type TEXT NOT NULL,
            schema INTEGER NOT NULL,
            hlc {t['int']} NOT NULL,
            payload TEXT NOT NULL,
            applied_at {t['real']} NOT NULL,
            applied_by TEXT,
            PRIMARY KEY (store_id, stream, seq))""",
        "CREATE INDEX events_applied_at ON events(applied_at)",
        f"""CREATE TABLE dead_letters (
            id {t['id']},
            store_id TEXT,
            topic TEXT NOT NULL,
            reason TEXT NOT NULL,
            payload {t['blob']},
            event_seq {t['int']},
            status TEXT NOT NULL DEFAULT 'open',
            note TEXT,
            received_at {t['real']} NOT NULL)""",
        "CREATE INDEX dead_letters_store ON dead_letters(store_id, received_at)",
        f"""CREATE TABLE members (
            member_id TEXT PRIMARY KEY,
            name TEXT, kana TEXT, phone TEXT, email TEXT, card_no TEXT, line_user_id TEXT,
            beacon_secret TEXT,
            consent TEXT NOT NULL DEFAULT '{{}}',
            custom TEXT NOT NULL DEFAULT '{{}}',
            home_store TEXT,
            erased INTEGER NOT NULL DEFAULT 0,
            version {t['int']} NOT NULL DEFAULT 0,
            created_at {t['real']} NOT NULL,
            updated_at {t['real']} NOT NULL)""",
        "CREATE INDEX members_card ON members(card_no)",
        "CREATE INDEX members_phone ON members(phone)",
        "CREATE INDEX members_email ON members(email)",
        f"""CREATE TABLE products (
            sku TEXT PRIMARY KEY, jan TEXT, name TEXT NOT NULL, price {t['int']} NOT NULL,
            tax_class TEXT NOT NULL, version {t['int']} NOT NULL DEFAULT 0, updated_at {t['real']} NOT NULL)""",
        f"""CREATE TABLE points_ledger (
            id {t['id']},
            member_id TEXT NOT NULL,
            delta {t['int']} NOT NULL,
            kind TEXT NOT NULL,
            ref TEXT,
            store_id TEXT NOT NULL,
            stream TEXT NOT NULL,
            store_seq {t['int']} NOT NULL,
            created_at {t['real']} NOT NULL)""",
        "CREATE INDEX points_ledger_member ON points_ledger(member_id)",
        f"""CREATE TABLE stock_ledger (
            id {t['id']},
            store_id TEXT NOT NULL,
            stream TEXT NOT NULL,
            sku TEXT NOT NULL,
            location TEXT NOT NULL,
            delta {t['int']} NOT NULL,
            reason TEXT NOT NULL,
            ref TEXT,
            store_seq {t['int']} NOT NULL,
            created_at {t['real']} NOT NULL)""",
        "CREATE INDEX stock_ledger_store_sku ON stock_ledger(store_id, sku)",
        f"""CREATE TABLE stock_levels (
            store_id TEXT NOT NULL, sku TEXT NOT NULL, on_hand {t['int']} NOT NULL,
            as_of {t['real']} NOT NULL, version {t['int']} NOT NULL DEFAULT 0,
            PRIMARY KEY (store_id, sku))""",
        f"CREATE TABLE points_balances (member_id TEXT PRIMARY KEY, balance {t['int']} NOT NULL)",
        *_balance_triggers(db),
        f"""CREATE TABLE changes (
            seq {t['int']} PRIMARY KEY,
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            store_id TEXT,
            data TEXT NOT NULL,
            created_at {t['real']} NOT NULL)""",
        f"CREATE TABLE counters (name TEXT PRIMARY KEY, value {t['int']} NOT NULL)",
        "INSERT INTO counters(name, value) VALUES ('change', 0)",
        f"""CREATE TABLE audit_log (
            id {t['id']}, actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT, detail TEXT,
            at {t['real']} NOT NULL)""",
    ]


def _balance_triggers(db: Central) -> list[str]:
    """Balances and on-hand are sums of the ledgers, kept current by triggers so that every writer
    (apply, conflict resolution, imports, merges) keeps them right and reading one costs O(1)."""
    if db.dialect == "postgresql":
        return [
            """CREATE FUNCTION tenpo_points_balance() RETURNS trigger AS $$ BEGIN
                IF TG_OP IN ('UPDATE', 'DELETE') THEN
                    UPDATE points_balances SET balance = balance - OLD.delta WHERE member_id = OLD.member_id;
                END IF;
                IF TG_OP IN ('INSERT', 'UPDATE') THEN
                    INSERT INTO points_balances(member_id, balance) VALUES (NEW.member_id, NEW.delta)
                    ON CONFLICT (member_id) DO UPDATE SET balance = points_balances.balance + EXCLUDED.balance;
                END IF;
                RETURN NULL; END $$ LANGUAGE plpgsql""",
            """CREATE TRIGGER points_ledger_balance AFTER INSERT OR UPDATE OF member_id, delta OR DELETE
               ON points_ledger FOR EACH ROW EXECUTE FUNCTION tenpo_points_balance()""",
            """CREATE FUNCTION tenpo_stock_level() RETURNS trigger AS $$ BEGIN
                IF TG_OP IN ('UPDATE', 'DELETE') THEN
                    UPDATE stock_levels SET on_hand = on_hand - OLD.delta WHERE store_id = OLD.store_id AND sku = OLD.sku;
                END IF;
                IF TG_OP IN ('INSERT', 'UPDATE') THEN
                    INSERT INTO stock_levels(store_id, sku, on_hand, as_of)
                    VALUES (NEW.store_id, NEW.sku, NEW.delta, NEW.created_at)
                    ON CONFLICT (store_id, sku) DO UPDATE SET on_hand = stock_levels.on_hand + EXCLUDED.on_hand,
                        as_of = EXCLUDED.as_of;
                END IF;
                RETURN NULL; END $$ LANGUAGE plpgsql""",
            """CREATE TRIGGER stock_ledger_level AFTER INSERT OR UPDATE OF store_id, sku, delta OR DELETE
               ON stock_ledger FOR EACH ROW EXECUTE FUNCTION tenpo_stock_level()""",
        ]
    return [
        """CREATE TRIGGER points_ledger_insert AFTER INSERT ON points_ledger BEGIN
            INSERT INTO points_balances(member_id, balance) VALUES (NEW.member_id, NEW.delta)
            ON CONFLICT(member_id) DO UPDATE SET balance = balance + excluded.balance; END""",
        """CREATE TRIGGER points_ledger_update AFTER UPDATE OF member_id, delta ON points_ledger BEGIN
            UPDATE points_balances SET balance = balance - OLD.delta WHERE member_id = OLD.member_id;
            INSERT INTO points_balances(member_id, balance) VALUES (NEW.member_id, NEW.delta)
            ON CONFLICT(member_id) DO UPDATE SET balance = balance + excluded.balance; END""",
        """CREATE TRIGGER points_ledger_delete AFTER DELETE ON points_ledger BEGIN
            UPDATE points_balances SET balance = balance - OLD.delta WHERE member_id = OLD.member_id; END""",
        """CREATE TRIGGER stock_ledger_insert AFTER INSERT ON stock_ledger BEGIN
            INSERT INTO stock_levels(store_id, sku, on_hand, as_of) VALUES (NEW.store_id, NEW.sku, NEW.delta, NEW.created_at)
            ON CONFLICT(store_id, sku) DO UPDATE SET on_hand = on_hand + excluded.on_hand, as_of = excluded.as_of; END""",
        """CREATE TRIGGER stock_ledger_update AFTER UPDATE OF store_id, sku, delta ON stock_ledger BEGIN
            UPDATE stock_levels SET on_hand = on_hand - OLD.delta WHERE store_id = OLD.store_id AND sku = OLD.sku;
            INSERT INTO stock_levels(store_id, sku, on_hand, as_of) VALUES (NEW.store_id, NEW.sku, NEW.delta, NEW.created_at)
            ON CONFLICT(store_id, sku) DO UPDATE SET on_hand = on_hand + excluded.on_hand, as_of = excluded.as_of; END""",
        """CREATE TRIGGER stock_ledger_delete AFTER DELETE ON stock_ledger BEGIN
            UPDATE stock_levels SET on_hand = on_hand - OLD.delta WHERE store_id = OLD.store_id AND sku = OLD.sku; END""",
    ]


def _area(area_statements: Callable[[str], list[str]]) -> Callable[[Central], list[str]]:
    return lambda db: list(area_statements(db.dialect))


# Numbers are fixed once released; each area owns the migration it registers here.
MIGRATIONS: list[tuple[int, str, Callable[[Central], list[str]]]] = [
    (1, "stores, events, dead letters, members, products, ledgers, change feed", _m001_core),
    (2, "sales, returns, reconciliation conflicts", _area(sales_schema.statements)),
    (3, "visits and coupons", _area(visits_schema.statements)),
    (4, "advance ship notices and inspections", _area(asn_schema.statements)),
    (5, "source records, golden members, merges", _area(members_schema.statements)),
    (6, "HQ monitor: audit of operator actions", _area(hq_schema.statements)),
    (7, "member field quality: corrected, unverified and flagged values", _area(members_schema.field_quality_statements)),
    (8, "member review queue, import quality figures, members settings", _area(members_tables.statements)),
    (9, "PostgreSQL: history partitioned by month, ledger triggers per statement", _area(history_schema.statements)),
    (10, "store authority: held points entries, refusals, contact edits (issue 14)", _area(authority_schema.statements)),
    (11, "operator accounts; the audit log hash-chained and append-only (issue 14)", audit_schema.statements),
    (12, "analytics: purchases, RFM inputs, basket counts, recommendations (issue 17)", _area(analytics_schema.statements)),
    (13, "loyalty: points lots metadata, ranks, job runs (issue 17)", _area(loyalty_schema.statements)),
    (14, "channel API: reservations, idempotency keys, request counters (issue 18)", _area(channel_schema.statements)),
    (15, "store certificate expiry; beacon id horizon (issue 14)", certs.statements),
    (16, "product variants: style, colour, size", _area(products_schema.variant_statements)),
    (17, "store-to-store transfers", _area(asn_schema.transfer_statements)),
    (18, "web points holds, member-app devices, member field clocks", _area(channel_extras_schema.statements)),
    (19, "reservations collected at another store, by transfer (issue 18)", _area(channel_schema.transit_statements)),
    (20, "home deliveries: where an お取り寄せ goes (issue 18 §7)", _area(channel_extras_schema.delivery_statements)),
    (21, "erasure reaches reservations and home deliveries (erased_at; by member, by feed key)",
     _area(channel_extras_schema.erasure_statements)),
    (22, "PostgreSQL: analytics keys compared byte-wise (issue 17 §10)", _area(analytics_schema.bytewise_statements)),
    (24, "PostgreSQL: room on stock levels' pages for the apply's updates (issue 19)", _area(levels_schema.statements)),
    (25, "PostgreSQL: the apply upserts its batch's stock levels itself", _area(levels_schema.apply_statements)),
    (29, "loyalty: the expiry run's safe ledger horizon (issue 17)", _area(loyalty_schema.horizon_statements))]


def migrate(db: Central) -> int:
    db.execute(
        f"CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at {_types(db)['real']})"
    )
    found = int(db.scalar("SELECT max(version) FROM schema_migrations", (), 0))
    known = max(version for version, _name, _statements in MIGRATIONS)
    if found > known:  # written by a newer tenpo: its tables would be misread, and this code cannot go back
        raise ConfigError(f"the central database has schema version {found}, newer than this tenpo knows ({known}):"
                          " upgrade tenpo on this machine")  # fmt: skip
    for version, name, statements in MIGRATIONS:
        with db.transaction():
            if db.dialect == "postgresql":
                # Two aggregators starting together: one migrates, the other waits here.
                db.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
            if db.scalar("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)):
                continue
            todo = statements(db)
            if not todo:  # an area that has no tables yet: leave its number free until it does
                continue
            for statement in todo:
                db.conn.execute(statement)  # no parameters: DDL text is sent as is (PL/pgSQL bodies hold % and ?)
            db.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)", (version, name, time.time())
            )
    return int(db.scalar("SELECT max(version) FROM schema_migrations", (), 0))
