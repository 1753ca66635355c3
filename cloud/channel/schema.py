"""Channel API and reservation tables (HQ migration 14). Portable SQL: SQLite and PostgreSQL.

- ``reservations``: every reservation HQ holds, whoever asked (a channel, or a store's clerk as
  ``store:S001``); ``state`` is HQ's word; a waiting ``reserve`` keeps where to answer (``reply_*``)
  so whichever aggregator applies the store's answer sends it.
- ``channel_requests``: one row per (channel, idempotency key) of a write: the same key gets the same
  reservation back; another request under a used key is a conflict.
- ``channel_stats``: requests per channel and outcome (``ok`` or an error code), the bad ones counted.
"""

from __future__ import annotations

from tenpo.cloud.db_types import column_types


def statements(dialect: str) -> list[str]:
    t = column_types(dialect)
    return [
        f"""CREATE TABLE reservations (
            reservation_id TEXT PRIMARY KEY,
            channel TEXT NOT NULL,
            store_id TEXT NOT NULL,
            sku TEXT NOT NULL,
            qty {t['int']} NOT NULL CHECK (qty > 0),
            member_id TEXT,
            customer TEXT,
            pickup_store TEXT,
            state TEXT NOT NULL,
            reason TEXT,
            receipt_no TEXT,
            hold_s {t['real']} NOT NULL,
            expires_at {t['real']},
            reply_topic TEXT,
            reply_corr {t['blob']},
            reply_deadline {t['real']},
            created_at {t['real']} NOT NULL,
            updated_at {t['real']} NOT NULL)""",
        "CREATE INDEX reservations_stock ON reservations(sku, store_id, state)",
        "CREATE INDEX reservations_expiry ON reservations(state, expires_at)",
        "CREATE INDEX reservations_reply ON reservations(reply_deadline)",
        f"""CREATE TABLE channel_requests (
            channel TEXT NOT NULL,
            idem_key TEXT NOT NULL,
            op TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            reservation_id TEXT,
            response TEXT,
            created_at {t['real']} NOT NULL,
            PRIMARY KEY (channel, idem_key))""",
        f"""CREATE TABLE channel_stats (
            channel TEXT NOT NULL,
            outcome TEXT NOT NULL,
            n {t['int']} NOT NULL,
            PRIMARY KEY (channel, outcome))""",
        "CREATE INDEX stock_levels_sku ON stock_levels(sku)",
    ]


def transit_statements(dialect: str) -> list[str]:
    """HQ migration 19: a reservation collected at another store remembers the transfer that carries it and
    the store that sent it (``store_id`` becomes the pickup store when it arrives)."""
    return [
        "ALTER TABLE reservations ADD COLUMN transfer_id TEXT",
        "ALTER TABLE reservations ADD COLUMN shipped_from TEXT",
    ]
