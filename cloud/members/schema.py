"""Cloud migration 5: the source records behind each golden member, imported orders, the merge log,
erasure requests and per-channel marketing consent.

The core `members` table (migration 1) stays the golden record: what the change feed sends to the
stores. These tables say where each golden value came from and how records were joined, so a merge
can be explained and undone. JSON columns are TEXT so the SQL stays the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from tenpo.cloud.db_types import column_types


def statements(dialect: str) -> list[str]:
    t = column_types(dialect)
    return [
        # One record per (channel, the channel's id for the person); member_id is its golden member.
        f"""CREATE TABLE member_sources (
            id {t['id']},
            source TEXT NOT NULL,
            source_id TEXT NOT NULL,
            member_id TEXT NOT NULL,
            name TEXT, kana TEXT, email TEXT, phone TEXT, postal_code TEXT, address TEXT, prefecture TEXT,
            birth_date TEXT, card_no TEXT,
            verified TEXT NOT NULL DEFAULT '[]',
            custom TEXT NOT NULL DEFAULT '{{}}',
            raw_hash TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            created_at {t['real']} NOT NULL,
            updated_at {t['real']} NOT NULL,
            UNIQUE (source, source_id))""",
        "CREATE INDEX member_sources_member ON member_sources(member_id)",
        # Blocking keys (tenpo.cloud.identity.blocking_keys) of every source record: candidate lookup.
        f"""CREATE TABLE member_blocks (
            block_key TEXT NOT NULL,
            source_ref {t['int']} NOT NULL,
            PRIMARY KEY (block_key, source_ref))""",
        "CREATE INDEX member_blocks_source ON member_blocks(source_ref)",
        # Golden values stores do not need (address, birth date): kept at HQ only.
        f"""CREATE TABLE member_profiles (
            member_id TEXT PRIMARY KEY,
            postal_code TEXT, address TEXT, prefecture TEXT, birth_date TEXT,
            provenance TEXT NOT NULL DEFAULT '{{}}',
            updated_at {t['real']} NOT NULL)""",
        f"""CREATE TABLE member_consents (
            source TEXT NOT NULL,
            source_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            granted INTEGER NOT NULL,
            updated_at {t['real']} NOT NULL,
            PRIMARY KEY (source, source_id, channel))""",
        f"""CREATE TABLE member_orders (
            id {t['id']},
            order_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            source TEXT,
            source_id TEXT,
            ordered_at TEXT,
            status TEXT,
            total {t['int']} NOT NULL,
            points {t['int']} NOT NULL DEFAULT 0,
            row_hash TEXT NOT NULL,
            imported_at {t['real']} NOT NULL,
            UNIQUE (order_id, channel))""",
        "CREATE INDEX member_orders_source ON member_orders(source, source_id)",
        f"""CREATE TABLE member_order_lines (
            order_ref {t['int']} NOT NULL,
            line_no INTEGER NOT NULL,
            sku TEXT, jan TEXT, name TEXT,
            qty {t['int']} NOT NULL,
            price {t['int']} NOT NULL,
            PRIMARY KEY (order_ref, line_no))""",
        # Every join: two golden members (loser set) or a source record attached to one (loser NULL).
        f"""CREATE TABLE member_merges (
            id {t['id']},
            winner TEXT NOT NULL,
            loser TEXT,
            source TEXT,
            source_id TEXT,
            rule TEXT NOT NULL,
            score {t['real']},
            matched_fields TEXT NOT NULL DEFAULT '[]',
            explanation TEXT NOT NULL DEFAULT '{{}}',
            loser_row TEXT,
            loser_sources TEXT NOT NULL DEFAULT '[]',
            actor TEXT NOT NULL,
            undone INTEGER NOT NULL DEFAULT 0,
            created_at {t['real']} NOT NULL,
            undone_at {t['real']})""",
        "CREATE INDEX member_merges_winner ON member_merges(winner)",
        "CREATE INDEX member_merges_loser ON member_merges(loser)",
        # Merged-away id -> golden id, for entries that still arrive under the old id.
        f"""CREATE TABLE member_aliases (
            alias TEXT PRIMARY KEY,
            member_id TEXT NOT NULL,
            merge_id {t['int']} NOT NULL)""",
        "CREATE INDEX member_aliases_member ON member_aliases(member_id)",
        # Ledger rows a merge re-pointed (amounts never change), so an unmerge can point them back.
        f"""CREATE TABLE member_points_moves (
            ledger_id {t['int']} NOT NULL,
            merge_id {t['int']} NOT NULL,
            from_member TEXT NOT NULL,
            PRIMARY KEY (ledger_id, merge_id))""",
        "CREATE INDEX member_points_moves_merge ON member_points_moves(merge_id)",
        *row_moves_statements(dialect),
        f"""CREATE TABLE member_erasures (
            id {t['id']},
            member_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            actor TEXT NOT NULL,
            member_ids TEXT NOT NULL,
            sources_erased {t['int']} NOT NULL,
            requested_at {t['real']} NOT NULL,
            completed_at {t['real']})""",
        # Hashes of erased (source, source_id): a later import of the same record is refused, not revived.
        f"""CREATE TABLE member_erased_sources (
            source_hash TEXT PRIMARY KEY,
            erasure_id {t['int']} NOT NULL)""",
    ]


def row_moves_statements(dialect: str) -> list[str]:
    """Rows of other areas' tables (sales, visits, ...) a merge re-pointed, by primary key, for unmerge.

    `IF NOT EXISTS` so the same statements can be registered as a later migration for central
    databases created before this table was part of migration 5.
    """
    t = column_types(dialect)
    return [
        # row_key: the row's primary key as a JSON object {column: value}, sorted by column.
        f"""CREATE TABLE IF NOT EXISTS member_row_moves (
            merge_id {t['int']} NOT NULL,
            table_name TEXT NOT NULL,
            row_key TEXT NOT NULL,
            from_member TEXT NOT NULL,
            PRIMARY KEY (merge_id, table_name, row_key))""",
    ]


def field_quality_statements(dialect: str) -> list[str]:
    """Cloud migration 7: how each field of a source record fared in cleansing (and an index for imports).

    `field_quality` is a JSON object {field: {"status": ..., "raw": ..., "rule": ..., "reason": ...}}
    (tenpo.shared.cleansing.FieldQuality; status is valid, corrected, unverified, flagged or missing;
    raw, rule and reason only where they say something). A flagged field's column is NULL and its raw
    text lives here; a corrected field's column holds the corrected value. Records imported before this
    migration have '{}'.
    """
    del dialect  # the same statements on SQLite and PostgreSQL
    return [
        "ALTER TABLE member_sources ADD COLUMN field_quality TEXT NOT NULL DEFAULT '{}'",
        # Every arriving record asks whether a clerk ever separated it (resolve.py): without this index
        # that question scans the whole merge log, and an import slows down as the log grows.
        "CREATE INDEX member_merges_source ON member_merges(source, source_id)",
    ]
