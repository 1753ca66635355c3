"""The store's personal-data audit log (``member_audit``) as a hash chain (edge migration 10, issue 14).

Every view or export of a member's data is written by one function
(``tenpo.edge.clerk.records.record_member_access``), which calls :func:`chain_fields` inside its
``BEGIN IMMEDIATE`` transaction: the write lock is held from the read of the chain's head to the
commit, so two processes (the clerk terminal, a CLI command) can never chain after the same row.
Triggers refuse UPDATE and DELETE; a member merge from HQ leaves audit rows under the id they were
written with (the listing follows the merge log instead). ``tenpo edge audit verify`` walks the chain.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import sqlite_utils

from tenpo.shared.audit_chain import Link, StoredRow, Verdict, next_link, verify

FIELDS = ("clerk_id", "member_id", "action", "at", "event_seq")
REFUSED = "member_audit is append-only: rows cannot be changed or deleted"


def migrate(db: sqlite_utils.Database) -> bool:
    """Edge migration 10: the chain columns, the rows written so far chained in id order, the triggers."""
    conn = db.conn
    for column, kind in (("chain_seq", "INTEGER"), ("prev_hash", "TEXT"), ("row_hash", "TEXT")):
        conn.execute(f"ALTER TABLE member_audit ADD COLUMN {column} {kind}")
    seq, head = 0, None
    for row in conn.execute(f"SELECT id, {', '.join(FIELDS)} FROM member_audit ORDER BY id").fetchall():
        link = next_link(seq, head, _normal(row[1:]))
        conn.execute("UPDATE member_audit SET chain_seq = ?, prev_hash = ?, row_hash = ? WHERE id = ?",
                     (link.seq, link.prev_hash, link.row_hash, row[0]))  # fmt: skip
        seq, head = link.seq, link.row_hash
    conn.execute("CREATE UNIQUE INDEX member_audit_chain ON member_audit(chain_seq)")
    conn.execute(f"CREATE TRIGGER member_audit_no_update BEFORE UPDATE ON member_audit"
                 f" BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END")  # fmt: skip
    conn.execute(f"CREATE TRIGGER member_audit_no_delete BEFORE DELETE ON member_audit"
                 f" BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END")  # fmt: skip
    return True


def _normal(fields: tuple[Any, ...] | list[Any]) -> list[Any]:
    """As SQLite gives them back: ``at`` is REAL, ``event_seq`` INTEGER."""
    clerk_id, member_id, action, at, event_seq = fields
    return [clerk_id, member_id, action, float(at), None if event_seq is None else int(event_seq)]


def chain_fields(conn: sqlite3.Connection, fields: tuple[Any, ...]) -> Link:
    """The position and hashes of the next row; call inside the write transaction that inserts it."""
    head = conn.execute("SELECT chain_seq, row_hash FROM member_audit WHERE chain_seq IS NOT NULL"
                        " ORDER BY chain_seq DESC LIMIT 1").fetchone()  # fmt: skip
    return next_link(int(head[0]) if head else 0, head[1] if head else None, _normal(fields))


def _stored(conn: sqlite3.Connection, batch: int = 5000) -> Iterator[StoredRow]:
    cols = f"id, {', '.join(FIELDS)}, chain_seq, prev_hash, row_hash"
    after = -1
    while True:
        rows = conn.execute(f"SELECT {cols} FROM member_audit WHERE chain_seq > ? ORDER BY chain_seq LIMIT ?",
                            (after, batch)).fetchall()  # fmt: skip
        for r in rows:
            yield StoredRow(int(r[0]), int(r[6]), tuple(_normal(r[1:6])), r[7], r[8])
        if len(rows) < batch:
            break
        after = int(rows[-1][6])
    for r in conn.execute(f"SELECT {cols} FROM member_audit WHERE chain_seq IS NULL ORDER BY id").fetchall():
        yield StoredRow(int(r[0]), None, tuple(_normal(r[1:6])), r[7], r[8])


def verify_chain(db: sqlite_utils.Database) -> Verdict:
    """Walk the store's audit chain; the first row that does not hold is named."""
    return verify(_stored(db.conn))
