"""Cloud migration 12: the analytics tables, kept current incrementally (tenpo.cloud.analytics.refresh).

- ``analytics_purchases``: one row per purchase (store receipt, store refund, counted web order) under
  its golden member (``customer``; not called member_id, so a member merge does not move these rows
  behind the analytics' back: the refresh re-attributes them itself), JST day, net yen and SKUs.
- ``analytics_members``: per member, the RFM inputs and what F2 needs (first and second sale).
- ``analytics_items`` / ``analytics_pairs`` / ``analytics_scopes``: purchases per SKU, per SKU pair
  (a < b) and in all, per scope: ``*`` (chain), ``store:S001``, ``channel:web``.
- ``analytics_state``: watermarks of what the refresh has folded in.
- ``analytics_recommendations``: the last recommendations sent to the stores for each member.
"""

from __future__ import annotations

from tenpo.cloud.db_types import column_types


def statements(dialect: str) -> list[str]:
    t = column_types(dialect)
    return [
        f"""CREATE TABLE analytics_purchases (
            purchase_id TEXT PRIMARY KEY,
            customer TEXT,
            channel TEXT NOT NULL,
            store_id TEXT,
            day TEXT NOT NULL,
            amount {t['int']} NOT NULL,
            is_sale INTEGER NOT NULL,
            items TEXT NOT NULL)""",
        "CREATE INDEX analytics_purchases_customer ON analytics_purchases(customer, day)",
        "CREATE INDEX analytics_purchases_day ON analytics_purchases(day)",
        f"""CREATE TABLE analytics_members (
            customer TEXT PRIMARY KEY,
            first_day TEXT NOT NULL,
            first_purchase TEXT NOT NULL,
            first_channel TEXT NOT NULL,
            second_day TEXT,
            second_purchase TEXT,
            last_day TEXT NOT NULL,
            frequency {t['int']} NOT NULL,
            monetary {t['int']} NOT NULL)""",
        f"""CREATE TABLE analytics_items (
            scope TEXT NOT NULL,
            sku TEXT NOT NULL,
            n {t['int']} NOT NULL,
            PRIMARY KEY (scope, sku))""",
        f"""CREATE TABLE analytics_pairs (
            scope TEXT NOT NULL,
            a TEXT NOT NULL,
            b TEXT NOT NULL,
            n {t['int']} NOT NULL,
            PRIMARY KEY (scope, a, b))""",
        "CREATE INDEX analytics_pairs_b ON analytics_pairs(scope, b)",
        f"CREATE TABLE analytics_scopes (scope TEXT PRIMARY KEY, purchases {t['int']} NOT NULL)",
        "CREATE TABLE analytics_state (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE analytics_recommendations (
            customer TEXT PRIMARY KEY,
            items TEXT NOT NULL,
            computed_at {t['real']} NOT NULL)""",
        "CREATE INDEX analytics_recommendations_age ON analytics_recommendations(computed_at)",
        # What the incremental refresh asks of the source tables: sales and orders since a watermark.
        "CREATE INDEX analytics_sales_applied ON sales(applied_at)",
        "CREATE INDEX analytics_orders_imported ON member_orders(imported_at)",
    ]


# Migration 22 (PostgreSQL): the rebuilt tables' text keys compared byte-wise. That is the order Python gives
# them (code point order is UTF-8 byte order), and a "C" sort or index build compares bytes (with abbreviated
# keys) instead of calling the locale for each comparison. SQLite compares bytes already.
_BYTEWISE = {
    "analytics_purchases": ("purchase_id", "customer", "day"),
    "analytics_members": ("customer",),
    "analytics_items": ("scope", "sku"),
    "analytics_pairs": ("scope", "a", "b"),
    "analytics_scopes": ("scope",),
}


def bytewise_statements(dialect: str) -> list[str]:
    if dialect != "postgresql":
        return []
    return [f"ALTER TABLE {table} " + ", ".join(f'ALTER COLUMN {c} TYPE TEXT COLLATE "C"' for c in columns)
            for table, columns in _BYTEWISE.items()]  # fmt: skip
