"""Migration 7 (PostgreSQL only): the history tables partitioned by month, and ledger triggers that run
once per statement.

- ``events`` (by ``applied_at``), ``points_ledger`` and ``stock_ledger`` (by ``created_at``) become
  declaratively partitioned tables with one partition per UTC month (``events_p202611``) and a default
  partition as a safety net. Queries that name a time range touch only its months; old months can be
  detached and archived (`tenpo cloud history detach`, cloud/history.py) without a long DELETE.
  A partitioned table's primary key must hold the partition key, so ``events`` is keyed by
  (store_id, stream, seq, applied_at): exactly-once rests on the store row's ``last_applied_seq``, read
  under a row lock in the apply transaction (cloud/apply.py), not on old event rows.
  The foreign key to ``stores`` goes too: the apply writes events only of the store row it holds locked,
  and the key's check was a query per event row (a sixth of the apply's time).
- Balances and on-hand were kept by a PL/pgSQL trigger per ledger row; now one trigger per statement
  reads the statement's rows (transition tables) and applies one aggregated delta per key, in key
  order, so a 500-event batch costs one upsert per SKU or member and two aggregators cannot deadlock
  on each other's balance rows.

SQLite keeps its tables and row triggers: it has no partitions, and its triggers cost no round trip.
"""

from __future__ import annotations

from tenpo.cloud.db_types import column_types

# (table, partition column): the tables that grow with every event
HISTORY_TABLES = (("events", "applied_at"), ("points_ledger", "created_at"), ("stock_ledger", "created_at"))

# Creates the month partition holding ``at`` (epoch seconds) unless it exists; rows a default partition
# caught for that month move into it first (ATTACH refuses a range the default partition holds rows of).
ENSURE_PARTITION = """CREATE OR REPLACE FUNCTION tenpo_month_partition(parent text, col text, at double precision)
RETURNS text AS $$
DECLARE
    m timestamp := date_trunc('month', to_timestamp(at) AT TIME ZONE 'UTC');  -- the month's start, UTC wall clock
    name text := parent || '_p' || to_char(m, 'YYYYMM');
    lo double precision := extract(epoch FROM m AT TIME ZONE 'UTC');
    hi double precision := extract(epoch FROM (m + interval '1 month') AT TIME ZONE 'UTC');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN RETURN name; END IF;
    PERFORM pg_advisory_xact_lock(hashtext('tenpo_month_partition'), hashtext(name));
    IF to_regclass(name) IS NOT NULL THEN RETURN name; END IF;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', name, parent);
    EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                   parent || '_default', col, lo, col, hi, name);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, name, lo, hi);
    RETURN name;
END $$ LANGUAGE plpgsql"""


def _partition(table: str, column: str, create: str, indexes: list[str], serial: bool) -> list[str]:
    """Rename the table aside, create its partitioned successor, cover the months it has rows of (and
    this month and the next), copy the rows over, and drop the old table."""
    old = f"{table}_unpartitioned"
    statements = [
        f"ALTER TABLE {table} RENAME TO {old}",
        f"ALTER TABLE {old} RENAME CONSTRAINT {table}_pkey TO {old}_pkey",
        *[f"ALTER INDEX {name} RENAME TO {old}_{name}" for name, _definition in _split(indexes)],
        create + f" PARTITION BY RANGE ({column})",
        f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT",
        *[definition for _name, definition in _split(indexes)],
        f"""SELECT tenpo_month_partition('{table}', '{column}', m) FROM (
                SELECT DISTINCT extract(epoch FROM date_trunc('month', to_timestamp({column}) AT TIME ZONE 'UTC')) AS m
                FROM {old}
                UNION SELECT extract(epoch FROM now()) UNION SELECT extract(epoch FROM now() + interval '1 month')
            ) AS months""",
        f"INSERT INTO {table} SELECT * FROM {old}",
    ]
    if serial:  # keep numbering: the sequence moves to the new table before the old one (its owner) is dropped
        statements.append(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id")
    statements.append(f"DROP TABLE {old}")
    return statements


def _split(indexes: list[str]) -> list[tuple[str, str]]:
    return [(definition.split()[2], definition) for definition in indexes]


def _ledger_triggers() -> list[str]:
    """Statement-level triggers: one aggregated delta per key, applied in key order."""
    statements = [
        "DROP TRIGGER IF EXISTS points_ledger_balance ON points_ledger",
        "DROP TRIGGER IF EXISTS stock_ledger_level ON stock_ledger",
        "DROP FUNCTION IF EXISTS tenpo_points_balance()",
        "DROP FUNCTION IF EXISTS tenpo_stock_level()",
    ]
    add_points = """INSERT INTO points_balances(member_id, balance)
        SELECT member_id, sum(delta) FROM {rows} GROUP BY member_id ORDER BY member_id
        ON CONFLICT (member_id) DO UPDATE SET balance = points_balances.balance + EXCLUDED.balance"""
    take_points = """UPDATE points_balances b SET balance = b.balance - o.total
        FROM (SELECT member_id, sum(delta) AS total FROM {rows} GROUP BY member_id ORDER BY member_id) o
        WHERE b.member_id = o.member_id"""
    add_stock = """INSERT INTO stock_levels(store_id, sku, on_hand, as_of)
        SELECT store_id, sku, sum(delta), max(created_at) FROM {rows} GROUP BY store_id, sku ORDER BY store_id, sku
        ON CONFLICT (store_id, sku) DO UPDATE SET on_hand = stock_levels.on_hand + EXCLUDED.on_hand,
            as_of = EXCLUDED.as_of"""
    take_stock = """UPDATE stock_levels l SET on_hand = l.on_hand - o.total
        FROM (SELECT store_id, sku, sum(delta) AS total FROM {rows} GROUP BY store_id, sku ORDER BY store_id, sku) o
        WHERE l.store_id = o.store_id AND l.sku = o.sku"""
    # An UPDATE counts only the rows whose key or delta changed (a row trigger said UPDATE OF those columns;
    # a trigger with transition tables may not name columns).
    changed = {
        "points": "SELECT n.* FROM {side} n JOIN {other} o USING (id)"
        " WHERE (o.member_id, o.delta) IS DISTINCT FROM (n.member_id, n.delta)",
        "stock": "SELECT n.* FROM {side} n JOIN {other} o USING (id)"
        " WHERE (o.store_id, o.sku, o.delta) IS DISTINCT FROM (n.store_id, n.sku, n.delta)",
    }
    for kind, table, add, take in (("points", "points_ledger", add_points, take_points),
                                   ("stock", "stock_ledger", add_stock, take_stock)):  # fmt: skip
        old_changed = "(" + changed[kind].format(side="old_rows", other="new_rows") + ") AS old_changed"
        new_changed = "(" + changed[kind].format(side="new_rows", other="old_rows") + ") AS new_changed"
        bodies = {
            "insert": ("REFERENCING NEW TABLE AS new_rows", add.format(rows="new_rows")),
            "update": ("REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
                       take.format(rows=old_changed) + ";\n" + add.format(rows=new_changed)),
            "delete": ("REFERENCING OLD TABLE AS old_rows", take.format(rows="old_rows")),
        }  # fmt: skip
        for event, (referencing, body) in bodies.items():
            function = f"tenpo_{kind}_ledger_{event}"
            statements += [
                f"CREATE FUNCTION {function}() RETURNS trigger AS $$ BEGIN {body}; RETURN NULL; END $$ LANGUAGE plpgsql",
                f"CREATE TRIGGER {table}_{event} AFTER {event.upper()} ON {table} {referencing}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
            ]
    return statements


def statements(dialect: str) -> list[str]:
    t = column_types(dialect)
    archived = f"""CREATE TABLE archived_streams (
            store_id TEXT NOT NULL, stream TEXT NOT NULL, last_seq {t['int']} NOT NULL,
            archived_at {t['real']} NOT NULL, PRIMARY KEY (store_id, stream))"""
    if dialect != "postgresql":
        return [archived]
    return [
        ENSURE_PARTITION,
        *_partition("events", "applied_at", f"""CREATE TABLE events (
            store_id TEXT NOT NULL,
            stream TEXT NOT NULL,
            seq {t['int']} NOT NULL,
            event_id TEXT NOT NULL,
            type TEXT NOT NULL,
            schema INTEGER NOT NULL,
            hlc {t['int']} NOT NULL,
            payload TEXT NOT NULL,
            applied_at {t['real']} NOT NULL,
            applied_by TEXT,
            PRIMARY KEY (store_id, stream, seq, applied_at))""",
            ["CREATE INDEX events_applied_at ON events(applied_at)"], serial=False),
        *_partition("points_ledger", "created_at", f"""CREATE TABLE points_ledger (
            id {t['int']} NOT NULL DEFAULT nextval('points_ledger_id_seq'),
            member_id TEXT NOT NULL,
            delta {t['int']} NOT NULL,
            kind TEXT NOT NULL,
            ref TEXT,
            store_id TEXT NOT NULL,
            stream TEXT NOT NULL,
            store_seq {t['int']} NOT NULL,
            created_at {t['real']} NOT NULL,
            PRIMARY KEY (id, created_at))""",
            ["CREATE INDEX points_ledger_member ON points_ledger(member_id)"], serial=True),
        *_partition("stock_ledger", "created_at", f"""CREATE TABLE stock_ledger (
            id {t['int']} NOT NULL DEFAULT nextval('stock_ledger_id_seq'),
            store_id TEXT NOT NULL,
            stream TEXT NOT NULL,
            sku TEXT NOT NULL,
            location TEXT NOT NULL,
            delta {t['int']} NOT NULL,
            reason TEXT NOT NULL,
            ref TEXT,
            store_seq {t['int']} NOT NULL,
            created_at {t['real']} NOT NULL,
            PRIMARY KEY (id, created_at))""",
            ["CREATE INDEX stock_ledger_store_sku ON stock_ledger(store_id, sku)"], serial=True),
        # after the copies: the rows copied over are already in the balances
        *_ledger_triggers(),
        # Streams whose event rows were archived: a late replay of one is still refused (cloud/apply.py).
        archived,
    ]
