"""Visits, zone stays and coupons reported by the stores' beacon services (HQ migration 3).

Keyed by the store's own ids (``visit_id``, ``stay_id``, ``coupon_id``), so an arrival and its
departure meet in one row whatever the order they are applied in, and a redelivered event is a
no-op. Portable SQL: the same statements run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from tenpo.cloud.db_types import column_types


def statements(dialect: str) -> list[str]:
    t = column_types(dialect)
    return [
        f"""CREATE TABLE visits (
            store_id TEXT NOT NULL,
            visit_id TEXT NOT NULL,
            member_id TEXT NOT NULL,
            arrived_at {t['real']} NOT NULL,
            left_at {t['real']},
            dwell_s {t['real']},
            interrupted INTEGER NOT NULL DEFAULT 0,
            recorded_at {t['real']} NOT NULL,
            PRIMARY KEY (store_id, visit_id))""",
        "CREATE INDEX visits_member ON visits(member_id, arrived_at)",
        "CREATE INDEX visits_store_arrived ON visits(store_id, arrived_at)",
        f"""CREATE TABLE zone_stays (
            store_id TEXT NOT NULL,
            stay_id TEXT NOT NULL,
            zone TEXT NOT NULL,
            subject_kind TEXT NOT NULL,
            subject_id TEXT NOT NULL,
            member_id TEXT,
            entered_at {t['real']} NOT NULL,
            left_at {t['real']},
            dwell_s {t['real']},
            PRIMARY KEY (store_id, stay_id))""",
        "CREATE INDEX zone_stays_member ON zone_stays(member_id)",
        f"""CREATE TABLE coupons (
            store_id TEXT NOT NULL,
            coupon_id TEXT NOT NULL,
            member_id TEXT NOT NULL,
            rule TEXT NOT NULL,
            visit_id TEXT,
            triggered_at {t['real']} NOT NULL,
            recorded_at {t['real']} NOT NULL,
            PRIMARY KEY (store_id, coupon_id))""",
        "CREATE INDEX coupons_member ON coupons(member_id, triggered_at)",
    ]
