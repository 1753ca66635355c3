"""A member's recommendations at the store (edge migration 13): HQ's ``member.recommendations`` change
(docs/protocol.md, docs/analytics.md) kept per member, newest version wins, so the clerk's member
profile shows them with HQ out of reach.

The table is WITHOUT ROWID: a member merge at the store moves rows of rowid tables with a member_id
column from the loser to the winner (tenpo.edge.membership.feed), and the winner already has a row
here; HQ sends the winner's own recommendations after the merge instead.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from tenpo.shared.changes import MemberRecommendations, rows_of

Handler = Callable[[sqlite3.Connection, str, list[Any], "int | None"], None]


def migrate(db: sqlite_utils.Database) -> bool:
    db.execute(
        """CREATE TABLE member_recommendations (
            member_id TEXT PRIMARY KEY,
            items TEXT NOT NULL,     -- JSON [{"sku", "name", "reason", "score"}], best first
            as_of TEXT,              -- the JST date HQ computed them for
            version INTEGER NOT NULL) WITHOUT ROWID"""
    )
    return True


@rows_of(MemberRecommendations)
def _store(conn: sqlite3.Connection, store_id: str, rows: list[MemberRecommendations], version: int | None) -> None:
    conn.executemany(
        "INSERT INTO member_recommendations(member_id, items, as_of, version) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(member_id) DO UPDATE SET items = excluded.items, as_of = excluded.as_of,"
        " version = excluded.version WHERE member_recommendations.version < excluded.version",
        [(r.member_id, json.dumps([{"sku": i.sku, "name": i.name, "reason": i.reason, "score": i.score} for i in r.items],
                                  ensure_ascii=False), r.as_of, version or r.version) for r in rows],
    )  # fmt: skip


CHANGE_HANDLERS: dict[str, Handler] = {"member.recommendations": _store}


@dataclass(frozen=True, slots=True)
class Recommended:
    sku: str
    name: str | None
    reason: str


def recommended(conn: sqlite3.Connection, member_id: str) -> tuple[Recommended, ...]:
    """What HQ last recommended for the member (none known: empty)."""
    try:
        row = conn.execute("SELECT items FROM member_recommendations WHERE member_id = ?", (member_id,)).fetchone()
    except sqlite3.OperationalError:  # a replica not migrated yet (a test's bare schema)
        return ()
    if row is None:
        return ()
    try:
        items = json.loads(row[0])
    except ValueError:
        return ()
    return tuple(Recommended(str(i.get("sku", "")), i.get("name"), str(i.get("reason", ""))) for i in items
                 if isinstance(i, dict))  # fmt: skip
