"""Partial returns (migration 7 in tenpo.edge.db): a receipt may now have several refunds.

Migration 2 allowed one refund per receipt with a unique index on ``sales.refund_of``. Partial
returns need several; ``refund_sale`` reads the earlier ones inside its ``BEGIN IMMEDIATE``
transaction and the engine refuses anything beyond what is left, so the index becomes a plain one
(it still serves that read).
"""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> bool:
    db.execute("DROP INDEX IF EXISTS sales_refund_of")
    db.execute("CREATE INDEX sales_refund_of ON sales(refund_of) WHERE refund_of IS NOT NULL")
    return True
