"""Cloud migration 8: the review queue of possible matches, per-import data-quality figures and the
members area's settings (trained match weights, the counter's registration rules).

Review items are keyed by the two *source records* (source, source_id), never by golden ids: golden
ids change with every merge and unmerge, a source record's key survives a re-import, so a decided
pair is never asked again.
"""

from __future__ import annotations

from tenpo.cloud.db_types import column_types


def statements(dialect: str) -> list[str]:
    t = column_types(dialect)
    return [
        # One row per pair of source records scored between the review and the match threshold;
        # left < right so a pair has one spelling.
        f"""CREATE TABLE member_reviews (
            id {t['id']},
            left_source TEXT NOT NULL,
            left_source_id TEXT NOT NULL,
            right_source TEXT NOT NULL,
            right_source_id TEXT NOT NULL,
            score {t['real']} NOT NULL,
            comparisons TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            note TEXT,
            decided_by TEXT,
            decided_at {t['real']},
            merge_id {t['int']},
            created_at {t['real']} NOT NULL,
            updated_at {t['real']} NOT NULL,
            UNIQUE (left_source, left_source_id, right_source, right_source_id))""",
        "CREATE INDEX member_reviews_status ON member_reviews(status)",
        "CREATE INDEX member_reviews_right ON member_reviews(right_source, right_source_id)",
        f"""CREATE TABLE member_imports (
            id {t['id']},
            file TEXT NOT NULL,
            rows {t['int']} NOT NULL,
            rejected {t['int']} NOT NULL,
            started_at {t['real']} NOT NULL,
            finished_at {t['real']} NOT NULL)""",
        # Per import, source and field: how many values were valid, corrected, unverified,
        # flagged or missing (tenpo.shared.cleansing.FIELD_STATUSES).
        f"""CREATE TABLE member_import_stats (
            import_id {t['int']} NOT NULL,
            source TEXT NOT NULL,
            field TEXT NOT NULL,
            valid {t['int']} NOT NULL,
            corrected {t['int']} NOT NULL,
            unverified {t['int']} NOT NULL,
            flagged {t['int']} NOT NULL,
            missing {t['int']} NOT NULL,
            PRIMARY KEY (import_id, source, field))""",
        # Named JSON values: "weights.trained" (tenpo cloud members train), "counter.rules" (rules set).
        f"""CREATE TABLE member_settings (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_by TEXT NOT NULL,
            updated_at {t['real']} NOT NULL)""",
    ]
