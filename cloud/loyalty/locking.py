"""How the loyalty jobs keep out of the way of a member merge (and of a store's entries) at HQ.

A job's chunk reads members' entries or spend, computes, and writes what follows from them; whatever moves a
member's points or history between that read and that write (a merge, an unmerge, a detach, a late store
entry) would make the write wrong. So a chunk reads under the locks that such a change takes:

- on SQLite the chunk's transaction (BEGIN IMMEDIATE) already holds the one writer lock;
- on PostgreSQL the expiry job locks the chunk's ``points_balances`` rows (every ledger change updates its
  member's row, through the trigger) and the rank job its ``members`` rows, each in member_id order, before
  it reads. The merge path takes the members rows, then the balance rows, of both people in the same order
  (tenpo.cloud.members.resolve), so the two never wait for each other in a circle.

The apply of a store's batch writes its members' balances in the order of its events; a deadlock with a
chunk is still possible there, and PostgreSQL breaks it by failing one side: a chunk so failed is retried
from its read (its transaction wrote nothing), the store sends its batch again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenpo.cloud.db import Central

T = TypeVar("T")
RETRIES = 5  # a chunk that keeps losing deadlocks is an error worth a log line, not a loop
RETRIED_STATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


def lock_balances(db: Central, members: list[str]) -> None:
    """PostgreSQL: hold these members' balance rows to the end of the transaction (no-op on SQLite)."""
    if db.dialect == "postgresql" and members:
        marks = ", ".join("?" for _ in members)
        db.all(f"SELECT member_id FROM points_balances WHERE member_id IN ({marks}) ORDER BY member_id FOR UPDATE",
               members)  # fmt: skip


def live_versions(db: Central, members: list[str]) -> dict[str, int]:
    """The version of each of these members still live (not merged away, not erased), their rows held to the
    end of the transaction on PostgreSQL."""
    if not members:
        return {}
    marks = ", ".join("?" for _ in members)
    rows = db.all(f"SELECT member_id, version FROM members WHERE erased = 0 AND member_id IN ({marks})"
                  f" ORDER BY member_id{db.lock_suffix()}", members)  # fmt: skip
    return {str(m): int(v) for m, v in rows}


def in_retried_transaction(db: Central, work: Callable[[], T]) -> T:
    """``work`` in one transaction, run again from the start when PostgreSQL broke a deadlock by failing it."""
    for attempt in range(1, RETRIES + 1):
        try:
            with db.transaction():
                return work()
        except Exception as exc:
            if getattr(exc, "sqlstate", None) not in RETRIED_STATES or attempt == RETRIES:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
