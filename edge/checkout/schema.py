"""Checkout's tables in the store database (migration 2 in tenpo.edge.db).

``sales`` holds every sale and refund with its JSON (``sale_to_json``) and the receipt text as
printed. ``sale_lines`` repeats the lines as rows for reports. ``sold_serials`` is the index of
RFID items sold and not returned: one open row per (GTIN, serial). Receipt numbers come from the
``receipt`` row of the core ``counters`` table, advanced in the sale's own transaction.
"""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> bool:
    db.execute(
        """CREATE TABLE sales (
            receipt_no TEXT PRIMARY KEY,     -- {store_id}-{n:08d}, n from counters('receipt')
            kind TEXT NOT NULL,              -- sale or refund
            refund_of TEXT REFERENCES sales(receipt_no),
            at TEXT NOT NULL,                -- ISO 8601 with the UTC offset, as printed
            member_id TEXT,
            total INTEGER NOT NULL,          -- yen, tax included; negative on a refund
            tax INTEGER NOT NULL,
            points_earned INTEGER NOT NULL,
            points_redeemed INTEGER NOT NULL,
            sale TEXT NOT NULL,              -- JSON, tenpo.edge.checkout.sale_to_json
            receipt TEXT NOT NULL,           -- the receipt as printed
            event_seq INTEGER NOT NULL,      -- outbox seq of the sale.completed / sale.refunded event
            created_at REAL NOT NULL)"""
    )
    # Migration 7 (schema_returns) makes this a plain index: partial returns allow several refunds.
    db.execute("CREATE UNIQUE INDEX sales_refund_of ON sales(refund_of) WHERE refund_of IS NOT NULL")
    db.execute("CREATE INDEX sales_member ON sales(member_id) WHERE member_id IS NOT NULL")
    db.execute(
        """CREATE TABLE sale_lines (
            receipt_no TEXT NOT NULL REFERENCES sales(receipt_no),
            line_no INTEGER NOT NULL,
            sku TEXT NOT NULL,
            gtin TEXT,
            name TEXT NOT NULL,
            qty INTEGER NOT NULL,
            unit_price INTEGER NOT NULL,
            rate INTEGER NOT NULL,
            discount INTEGER NOT NULL,
            total INTEGER NOT NULL,
            serial TEXT,
            PRIMARY KEY (receipt_no, line_no)) WITHOUT ROWID"""
    )
    db.execute(
        """CREATE TABLE sold_serials (
            gtin TEXT NOT NULL,              -- canonical: 13-digit JAN, 8 for EAN-8, else 14
            serial TEXT NOT NULL,
            receipt_no TEXT NOT NULL REFERENCES sales(receipt_no),
            returned_in TEXT REFERENCES sales(receipt_no))"""
    )
    # The same tagged item cannot be sold twice until it comes back.
    db.execute("CREATE UNIQUE INDEX sold_serials_open ON sold_serials(gtin, serial) WHERE returned_in IS NULL")
    # The offline-period query (points since HQ's last balance) reads a member's newest entries only.
    db.execute("CREATE INDEX points_ledger_member_seq ON points_ledger(member_id, store_seq)")
    return True
