"""Sales and reconciliation tables in the central database (migration 2 in tenpo.cloud.db).

``sales``: every sale and refund the stores report, with the sale's JSON (the store's
``sale_to_json``); keyed by store, stream (a wiped store starts numbering again in a new stream)
and receipt number. ``feed_cursor`` is how far the store had read HQ's change feed when it sold
(reconciliation uses it to tell which entries of other stores the store could not know). Stock and points
movements are not here: they arrive as their own
``stock.moved`` / ``points.entry`` events and live in the core ledgers.

``conflicts``: what the ledgers show the business forbids (a member's points below zero, a
product sold beyond stock), at most one open per subject (partial unique index), resolved by an
explicit ledger entry or an acceptance, never by changing history.
"""

from __future__ import annotations

from tenpo.cloud.db_types import column_types


def statements(dialect: str) -> list[str]:
    t = column_types(dialect)
    return [
        f"""CREATE TABLE sales (
            store_id TEXT NOT NULL,
            stream TEXT NOT NULL,
            receipt_no TEXT NOT NULL,
            kind TEXT NOT NULL,
            refund_of TEXT,
            at TEXT NOT NULL,
            member_id TEXT,
            total {t['int']} NOT NULL,
            tax {t['int']} NOT NULL,
            points_earned {t['int']} NOT NULL,
            points_redeemed {t['int']} NOT NULL,
            sale TEXT NOT NULL,
            store_seq {t['int']} NOT NULL,
            feed_cursor {t['int']},
            applied_at {t['real']} NOT NULL,
            PRIMARY KEY (store_id, stream, receipt_no))""",
        "CREATE INDEX sales_member ON sales(member_id)",
        "CREATE INDEX sales_at ON sales(store_id, at)",
        f"""CREATE TABLE conflicts (
            id {t['id']},
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            store_id TEXT NOT NULL,
            level {t['int']} NOT NULL,
            detail TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'open',
            detected_at {t['real']} NOT NULL,
            updated_at {t['real']} NOT NULL,
            action TEXT,
            note TEXT,
            resolved_by TEXT,
            resolved_at {t['real']},
            resolution TEXT)""",
        "CREATE UNIQUE INDEX conflicts_open ON conflicts(kind, subject) WHERE status = 'open'",
        "CREATE INDEX conflicts_status ON conflicts(status, store_id)",
    ]
