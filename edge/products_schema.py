"""The products table's later columns (numbered migrations registered in tenpo.edge.db)."""

from __future__ import annotations

import sqlite_utils


def migrate_variants(db: sqlite_utils.Database) -> bool:
    """Migration 16: style (品番), colour and size, so the clerk sees every variant of a style at once."""
    columns = {column.name for column in db["products"].columns}
    for column in ("style", "colour", "size"):
        if column not in columns:
            db.execute(f"ALTER TABLE products ADD COLUMN {column} TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS products_style ON products(style)")
    return True
