"""This area's tables in the store database (migration 4 in tenpo.edge.db).

``asns`` holds every ASN the store knows, its own and other stores' (those are how a cross-read
from a neighbouring dock is recognised); ``asn_epcs`` indexes their EPCs for that lookup.
``inspections`` holds one row per dock session with its verdict, pending until a clerk decides.
"""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> bool:
    db.execute(
        """CREATE TABLE asns (
            shipment_id TEXT PRIMARY KEY,
            store_id TEXT NOT NULL,          -- destination store
            status TEXT NOT NULL DEFAULT 'open',  -- open, received, closed
            source TEXT NOT NULL,            -- hq (change feed) or file
            data TEXT NOT NULL,              -- the ASN as JSON (tenpo.shared.asn.Asn)
            version INTEGER NOT NULL DEFAULT 0,  -- HQ change seq of the last change applied
            updated_at REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX asns_store_status ON asns(store_id, status)")
    db.execute(
        """CREATE TABLE asn_epcs (
            epc TEXT NOT NULL,
            shipment_id TEXT NOT NULL REFERENCES asns(shipment_id) ON DELETE CASCADE,
            PRIMARY KEY (epc, shipment_id)) WITHOUT ROWID"""
    )
    db.execute(
        """CREATE TABLE inspections (
            inspection_id TEXT PRIMARY KEY,
            shipment_id TEXT,                -- NULL: no open ASN matched the delivery
            status TEXT NOT NULL,            -- pending, accepted, held
            opened_at REAL NOT NULL,
            closed_at REAL NOT NULL,
            reads INTEGER NOT NULL,
            tags INTEGER NOT NULL,
            verdict TEXT NOT NULL,           -- JSON (tenpo.edge.inspection.matching.Verdict)
            verdict_ms REAL,                 -- time from session close to verdict stored
            receipt TEXT,                    -- JSON: what accepting posted to stock, per SKU
            decided_at REAL,
            decided_by TEXT,
            note TEXT,
            event_seq INTEGER,               -- outbox seq of the inspection.completed event
            created_at REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX inspections_status ON inspections(status, created_at)")
    return True
