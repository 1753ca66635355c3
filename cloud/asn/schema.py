"""This area's tables in the central database (migration 4 in tenpo.cloud.db).

``asns``: every ASN imported at HQ and where it stands (open until its store accepts a delivery).
``inspections``: one row per dock inspection a store decided (accepted or held), latest status
wins; the HQ monitor lists it.
"""

from __future__ import annotations

from tenpo.cloud.db_types import column_types


def statements(dialect: str) -> list[str]:
    t = column_types(dialect)
    return [
        f"""CREATE TABLE asns (
            shipment_id TEXT PRIMARY KEY,
            store_id TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'open',
            data TEXT NOT NULL,
            units {t['int']} NOT NULL,
            version {t['int']} NOT NULL DEFAULT 0,
            created_at {t['real']} NOT NULL,
            updated_at {t['real']} NOT NULL,
            received_at {t['real']},
            received_by_inspection TEXT)""",
        "CREATE INDEX asns_store_status ON asns(store_id, status)",
        f"""CREATE TABLE inspections (
            store_id TEXT NOT NULL,
            inspection_id TEXT NOT NULL,
            shipment_id TEXT,
            status TEXT NOT NULL,
            summary TEXT NOT NULL,
            at {t['real']} NOT NULL,
            stream TEXT NOT NULL,
            store_seq {t['int']} NOT NULL,
            applied_at {t['real']} NOT NULL,
            PRIMARY KEY (store_id, inspection_id))""",
        "CREATE INDEX inspections_at ON inspections(at)",
    ]


def transfer_statements(dialect: str) -> list[str]:
    """Migration 17: transfers between stores (tenpo.cloud.asn.transfers), one row per transfer."""
    t = column_types(dialect)
    return [
        f"""CREATE TABLE transfers (
            transfer_id TEXT PRIMARY KEY,
            from_store TEXT NOT NULL,
            to_store TEXT NOT NULL,
            data TEXT NOT NULL,
            units {t['int']} NOT NULL,
            status TEXT NOT NULL,
            shipped_at {t['real']} NOT NULL,
            received_at {t['real']},
            inspection_id TEXT,
            stream TEXT NOT NULL,
            store_seq {t['int']} NOT NULL,
            applied_at {t['real']} NOT NULL)""",
        "CREATE INDEX transfers_to_status ON transfers(to_store, status)",
    ]
