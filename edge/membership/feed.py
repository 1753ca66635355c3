"""Member merges and unmerges from HQ, applied to the store replica.

A handler is ``handler(conn, store_id, rows, version)``: apply ``rows`` (change data, decoded into their
tenpo.shared.changes Structs) inside the caller's transaction; ``version`` is the change seq (None in a
snapshot: use ``row.version``).

`member.merge` {"winner", "losers", "merge_id"}: every row of every table with a `member_id` column
(found in the schema, so tables other areas add are covered too) moves from each loser id to the
winner, the loser's member row goes, and the moves are remembered. The winner's `member.upsert` and
`points.balance` follow in the feed; until they arrive the winner row is a copy of the loser's, so
the clerk finds the member under the new id at once. `member.unmerge` {"winner", "loser"} moves the
remembered rows back (the loser's own upsert and balance follow).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from tenpo.shared.changes import MemberMerge, MemberUnmerge, PurchaseRecorded, rows_of

from . import vault
from .rules import store_rules

Handler = Callable[[sqlite3.Connection, str, list[Any], "int | None"], None]

# member_audit is append-only (hash-chained, issue 14): its rows keep the id they were written with.
_OWN_TABLES = {"members", "member_merges", "member_merge_moves", "member_audit"}


def member_tables(conn: sqlite3.Connection) -> list[str]:
    """Tables (with rowids) that have a member_id column, other than the members table itself."""
    tables = []
    for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"):
        if name in _OWN_TABLES or "WITHOUT ROWID" in (sql or "").upper():
            continue
        if any(column[1] == "member_id" for column in conn.execute(f'PRAGMA table_info("{name}")')):
            tables.append(name)
    return sorted(tables)


def _member_columns(conn: sqlite3.Connection) -> list[str]:
    return [column[1] for column in conn.execute("PRAGMA table_info(members)")]


def _merge_one(conn: sqlite3.Connection, winner: str, loser: str, hq_merge_id: Any, version: int) -> None:
    columns = _member_columns(conn)
    has_loser = conn.execute("SELECT 1 FROM members WHERE member_id = ?", (loser,)).fetchone() is not None
    has_winner = conn.execute("SELECT 1 FROM members WHERE member_id = ?", (winner,)).fetchone() is not None
    if has_loser and not has_winner:
        copied = [c for c in columns if c not in ("member_id", "version", "provisional")]
        conn.execute(
            f"INSERT INTO members(member_id, version, provisional, {', '.join(copied)})"
            f" SELECT ?, 0, 0, {', '.join(copied)} FROM members WHERE member_id = ?",
            (winner, loser),
        )
        vault.copy_to(conn, loser, winner)  # sealed values are bound to their member id: seal them again
    merge_ref = conn.execute(
        "INSERT INTO member_merges(winner, loser, hq_merge_id, version, applied_at) VALUES (?, ?, ?, ?, ?)",
        (winner, loser, hq_merge_id, version, time.time()),
    ).lastrowid
    for table in member_tables(conn):
        conn.execute(
            f'INSERT INTO member_merge_moves(merge_ref, table_name, row_id) SELECT ?, ?, rowid FROM "{table}"'
            " WHERE member_id = ?",
            (merge_ref, table, loser),
        )
        conn.execute(f'UPDATE "{table}" SET member_id = ? WHERE member_id = ?', (winner, loser))
    vault.forget_tokens(conn, loser)
    conn.execute("DELETE FROM members WHERE member_id = ?", (loser,))


@rows_of(MemberMerge)
def _merge(conn: sqlite3.Connection, store_id: str, rows: list[MemberMerge], version: int | None) -> None:
    for row in rows:
        for loser in row.losers:
            if loser != row.winner:
                _merge_one(conn, row.winner, loser, row.merge_id, version or row.version)


@rows_of(MemberUnmerge)
def _unmerge(conn: sqlite3.Connection, store_id: str, rows: list[MemberUnmerge], version: int | None) -> None:
    now = time.time()
    for row in rows:
        winner, loser = row.winner, row.loser
        if conn.execute("SELECT 1 FROM members WHERE member_id = ?", (loser,)).fetchone() is None:
            # An empty row for now: the loser's member.upsert follows in the feed and fills it.
            conn.execute(
                "INSERT INTO members(member_id, provisional, erased, points_hq, points_through, version, created_at,"
                " updated_at) VALUES (?, 0, 0, 0, 0, 0, ?, ?)",
                (loser, now, now),
            )
        found = conn.execute(
            "SELECT id FROM member_merges WHERE winner = ? AND loser = ? AND undone = 0 ORDER BY id DESC LIMIT 1",
            (winner, loser),
        ).fetchone()
        if found is None:
            continue  # this store never held the loser: nothing was moved here
        for table, row_id in conn.execute(
            "SELECT table_name, row_id FROM member_merge_moves WHERE merge_ref = ?", (found[0],)
        ).fetchall():
            if table in member_tables(conn):
                conn.execute(f'UPDATE "{table}" SET member_id = ? WHERE rowid = ? AND member_id = ?', (loser, row_id, winner))
        conn.execute("UPDATE member_merges SET undone = 1 WHERE id = ?", (found[0],))


@rows_of(PurchaseRecorded)
def _purchases(conn: sqlite3.Connection, store_id: str, rows: list[PurchaseRecorded], version: int | None) -> None:
    conn.executemany(
        "INSERT INTO member_purchases(purchase_id, member_id, channel, ref, kind, at, total, points, version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(purchase_id) DO UPDATE SET member_id = excluded.member_id,"
        " kind = excluded.kind, at = excluded.at, total = excluded.total, points = excluded.points,"
        " version = excluded.version WHERE member_purchases.version < excluded.version",
        [(r.purchase_id, r.member_id, r.channel, r.ref, r.kind, r.at, r.total, r.points, version or r.version)
         for r in rows],
    )  # fmt: skip


CHANGE_HANDLERS: dict[str, Handler] = {
    "purchase.recorded": _purchases,
    "member.merge": _merge,
    "member.unmerge": _unmerge,
    "member.rules": store_rules,
}
SNAPSHOT_HANDLERS: dict[str, Handler] = {"member_rules": store_rules}
