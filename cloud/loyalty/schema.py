"""Loyalty tables in the central database (migration 13 in tenpo.cloud.db), SQLite and PostgreSQL alike.

``loyalty_settings``: the chain's `[loyalty]` configuration (`tenpo cloud loyalty config FILE`), as JSON.
``loyalty_points_meta``: what a store's ``points.entry`` said beyond the ledger row, keyed like the event:
when it happened (the store's hybrid-logical clock), a campaign's own last good day, and for an accrual the
rank, multiplier and base points it earned at (``checked`` once HQ has held it against the rank it had sent).
``loyalty_members``: each member's rank, rolling spend, the lots last sent to the stores and the soonest end of
a lot (``next_end``), so the nightly expiry job reads only members with news or a lot ending.
``loyalty_rank_log``: every rank HQ sent, with the change seq that carried it, so HQ knows which rank a store
had when it sold (the sale's ``feed_cursor``).
``loyalty_runs``: each run of the expiry and rank jobs (as-of date, members touched, points expired), and the
expiry run's horizon: how far into the ledger it looked (tenpo.cloud.loyalty.horizon, migration 29).
"""

from __future__ import annotations

from tenpo.cloud.db_types import column_types


def statements(dialect: str) -> list[str]:
    t = column_types(dialect)
    return [
        f"""CREATE TABLE loyalty_settings (
            name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at {t['real']} NOT NULL)""",
        f"""CREATE TABLE loyalty_points_meta (
            store_id TEXT NOT NULL,
            stream TEXT NOT NULL,
            store_seq {t['int']} NOT NULL,
            member_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            delta {t['int']} NOT NULL,
            ref TEXT,
            at {t['real']} NOT NULL,
            expires_on TEXT,
            rank TEXT,
            multiplier_pct {t['int']},
            base {t['int']},
            checked INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (store_id, stream, store_seq))""",
        "CREATE INDEX loyalty_points_meta_unchecked ON loyalty_points_meta(member_id) WHERE checked = 0",
        f"""CREATE TABLE loyalty_members (
            member_id TEXT PRIMARY KEY,
            rank TEXT NOT NULL,
            multiplier_pct {t['int']} NOT NULL,
            spend {t['int']} NOT NULL,
            lots TEXT NOT NULL DEFAULT '[]',
            next_end TEXT,
            as_of TEXT NOT NULL,
            version {t['int']} NOT NULL DEFAULT 0,
            updated_at {t['real']} NOT NULL)""",
        f"""CREATE TABLE loyalty_rank_log (
            id {t['id']},
            member_id TEXT NOT NULL,
            rank TEXT NOT NULL,
            multiplier_pct {t['int']} NOT NULL,
            change_seq {t['int']} NOT NULL,
            as_of TEXT NOT NULL)""",
        "CREATE INDEX loyalty_rank_log_member ON loyalty_rank_log(member_id, change_seq)",
        f"""CREATE TABLE loyalty_runs (
            id {t['id']},
            job TEXT NOT NULL,
            as_of TEXT NOT NULL,
            members {t['int']} NOT NULL,
            points {t['int']} NOT NULL,
            ledger_mark {t['int']} NOT NULL DEFAULT 0,
            at {t['real']} NOT NULL)""",
        "CREATE INDEX loyalty_runs_job ON loyalty_runs(job, as_of)",
        "CREATE INDEX loyalty_members_next_end ON loyalty_members(next_end)",
    ]


def horizon_statements(dialect: str) -> list[str]:
    """Migration 29: the expiry run's horizon; on PostgreSQL each ledger row's inserting transaction.

    The column is added without a default first (no rewrite of the ledger: the rows already there read NULL,
    all committed long before), then given its default for new rows. Month partitions made later copy it
    (``LIKE ... INCLUDING DEFAULTS``, tenpo.cloud.history_schema) and get the partitioned BRIN index on
    attach. BRIN, not B-tree: a few pages per month to keep up, next to nothing per insert."""
    t = column_types(dialect)
    runs = [f"ALTER TABLE loyalty_runs ADD COLUMN ledger_xmin {t['int']} NOT NULL DEFAULT 0",
            "ALTER TABLE loyalty_runs ADD COLUMN ledger_snapshot TEXT"]  # fmt: skip
    if dialect != "postgresql":
        return runs
    return [
        *runs,
        "ALTER TABLE points_ledger ADD COLUMN xact BIGINT",
        "ALTER TABLE points_ledger ALTER COLUMN xact SET DEFAULT (pg_current_xact_id()::text::bigint)",
        # autosummarize: each block range is summed up as soon as it fills, so a run skips all but the newest
        "CREATE INDEX points_ledger_xact ON points_ledger USING brin (xact) WITH (autosummarize = on)",
    ]
