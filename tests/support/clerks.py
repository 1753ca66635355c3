"""Clerk accounts for tests that run store commands: every command that moves money or stock or reads
personal data takes ``--clerk ID`` and reads the PIN from the first line of stdin (docs/roles.md)."""

from __future__ import annotations

import functools
import io
import os
import sys
from pathlib import Path

import pytest
import sqlite_utils

from tenpo.edge import db as edge_db
from tenpo.edge.clerk.accounts import DEFAULT_COST, ScryptCost, add_clerk, hash_pin

MANAGER_ID, CLERK_ID, PIN = "9001", "9002", "482913"
AS_MANAGER = ("--clerk", MANAGER_ID)
AS_CLERK = ("--clerk", CLERK_ID)
PIN_LINE = f"{PIN}\n"


# Hashing the PIN is all of add_clerk's cost: ~0.25 s CPU at DEFAULT_COST, and the fixtures add two clerks to
# every store, hundreds of times a run. add_test_clerk hashes each clerk's PIN once per test process instead
# (per clerk: two clerks with one PIN still get different salts, as add_clerk gives them).
CHEAP = ScryptCost(n=2, r=1, p=1)


@functools.cache
def _hashed(clerk_id: str, pin: str) -> tuple[bytes, bytes]:
    """A real hash of ``pin`` as add_clerk makes it (DEFAULT_COST, random salt): (salt, digest)."""
    salt = os.urandom(16)
    return salt, hash_pin(pin, salt, DEFAULT_COST)


def add_test_clerk(db: sqlite_utils.Database, clerk_id: str, name: str, role: str, pin: str) -> None:
    """``add_clerk`` (its checks and row), then the PIN's hash swapped for this process's one at DEFAULT_COST:
    signing in verifies it as a real account's, at the full cost."""
    add_clerk(db, clerk_id, name, role, pin, cost=CHEAP)
    salt, digest = _hashed(clerk_id, pin)
    with edge_db.transaction(db) as conn:
        conn.execute(
            "UPDATE clerks SET pin_hash = ?, pin_salt = ?, kdf_n = ?, kdf_r = ?, kdf_p = ? WHERE clerk_id = ?",
            (digest, salt, DEFAULT_COST.n, DEFAULT_COST.r, DEFAULT_COST.p, clerk_id),
        )


def add_store_clerks(database: Path | str) -> None:
    """A manager and a clerk, both with PIN; the database is migrated if it was not yet."""
    db = edge_db.connect(database)
    try:
        add_test_clerk(db, MANAGER_ID, "店長 テスト", "manager", PIN)
        add_test_clerk(db, CLERK_ID, "店員 テスト", "clerk", PIN)
    finally:
        db.conn.close()


def pins_on_stdin(monkeypatch: pytest.MonkeyPatch, count: int = 50) -> None:
    """For in-process ``main([...])`` calls: each command reads its PIN from the next line of stdin."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(PIN_LINE * count))
