"""This area's tables in the store database (a numbered migration registered in tenpo.edge.db)."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> bool:
    """Create this area's tables inside the migration transaction; False while there is nothing to create."""
    return False
