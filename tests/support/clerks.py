"""Clerk accounts for tests that run store commands: every command that moves money or stock or reads
personal data takes ``--clerk ID`` and reads the PIN from the first line of stdin (docs/roles.md)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from tenpo.edge import db as edge_db
from tenpo.edge.clerk.accounts import add_clerk

MANAGER_ID, CLERK_ID, PIN = "9001", "9002", "482913"
AS_MANAGER = ("--clerk", MANAGER_ID)
AS_CLERK = ("--clerk", CLERK_ID)
PIN_LINE = f"{PIN}\n"


def add_store_clerks(database: Path | str) -> None:
    """A manager and a clerk, both with PIN; the database is migrated if it was not yet."""
    db = edge_db.connect(database)
    try:
        add_clerk(db, MANAGER_ID, "店長 テスト", "manager", PIN)
        add_clerk(db, CLERK_ID, "店員 テスト", "clerk", PIN)
    finally:
        db.conn.close()


def pins_on_stdin(monkeypatch: pytest.MonkeyPatch, count: int = 50) -> None:
    """For in-process ``main([...])`` calls: each command reads its PIN from the next line of stdin."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(PIN_LINE * count))
