"""Edge migration 15: ``clerk_actions``, who ran which store command.

Every `tenpo edge ...` command that moves money or stock or reads or changes personal data signs a
clerk in with ``--clerk ID`` and a PIN (docs/roles.md); the command, the clerk and what it acted on
(receipt number, SKU, member id, clerk id) are kept here, next to ``clerk_signins`` (every attempt)
and ``clerk_approvals`` (manager approvals).
"""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> bool:
    db.execute(
        """CREATE TABLE clerk_actions (
            id INTEGER PRIMARY KEY,
            clerk_id TEXT NOT NULL,          -- signed in with its PIN for this command
            role TEXT NOT NULL,
            command TEXT NOT NULL,           -- e.g. 'edge refund'
            ref TEXT,                        -- receipt number, SKU, member id, clerk id ...
            at REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX clerk_actions_at ON clerk_actions(at)")
    return True
