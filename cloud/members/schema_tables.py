"""Which tables of HQ's schema have a member_id column, and their primary keys (for merges, store.member_tables)."""

from __future__ import annotations

from tenpo.cloud.db import Central


def quote_name(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# Tables found per schema text: an import merges thousands of times, each reading every table's columns.
_SQLITE_TABLES_BY_SCHEMA: dict[tuple[tuple[str, str], ...], dict[str, tuple[str, ...]]] = {}


def sqlite_member_tables(db: Central) -> dict[str, tuple[str, ...]]:
    # The CREATE TABLE texts decide the answer (SQLite rewrites them on ALTER TABLE): read again when they differ.
    schema = tuple((str(name), str(sql)) for name, sql in db.all(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"))  # fmt: skip
    found = _SQLITE_TABLES_BY_SCHEMA.get(schema)
    if found is None:
        if len(_SQLITE_TABLES_BY_SCHEMA) >= 8:
            _SQLITE_TABLES_BY_SCHEMA.clear()
        found = _SQLITE_TABLES_BY_SCHEMA[schema] = _read_sqlite_member_tables(db, [name for name, _ in schema])
    return found


def _read_sqlite_member_tables(db: Central, names: list[str]) -> dict[str, tuple[str, ...]]:
    found = {}
    for name in names:
        columns = db.all(f"PRAGMA table_info({quote_name(name)})")  # cid, name, type, notnull, default, pk position
        if any(c[1] == "member_id" for c in columns):
            found[name] = tuple(c[1] for c in sorted((c for c in columns if c[5]), key=lambda c: c[5]))
    return found


def pg_member_tables(db: Central) -> dict[str, tuple[str, ...]]:
    names = db.all(
        "SELECT c.table_name FROM information_schema.columns c JOIN information_schema.tables t"
        " ON t.table_schema = c.table_schema AND t.table_name = c.table_name WHERE c.table_schema = current_schema()"
        " AND c.column_name = 'member_id' AND t.table_type = 'BASE TABLE'"
        # a month of a partitioned history table is moved through its parent (cloud/history_schema.py)
        " AND c.table_name NOT IN (SELECT relname FROM pg_class WHERE relispartition)"
    )  # fmt: skip
    keys: dict[str, list[str]] = {}
    for table, column in db.all(
        "SELECT k.table_name, k.column_name FROM information_schema.table_constraints tc"
        " JOIN information_schema.key_column_usage k ON k.constraint_schema = tc.constraint_schema"
        " AND k.constraint_name = tc.constraint_name AND k.table_name = tc.table_name"
        " WHERE tc.table_schema = current_schema() AND tc.constraint_type = 'PRIMARY KEY'"
        " ORDER BY k.table_name, k.ordinal_position"
    ):
        keys.setdefault(table, []).append(column)
    return {name: tuple(keys.get(name, ())) for (name,) in names}
