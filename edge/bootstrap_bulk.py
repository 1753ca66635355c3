"""A bootstrap's members are bulk-loaded: their search indexes are built once at the end, not row by row.

The blind indexes on ``members`` (phone, email, card...) and the name tokens' primary key are keyed HMACs:
random keys. Inserted chunk by chunk into B-trees larger than SQLite's cache, each chunk of a million-member
bootstrap rewrote most of their pages. Instead, while the members entity of a snapshot is applied:

- the members' secondary indexes are dropped (their ``CREATE INDEX`` text kept in ``meta``) and created again
  when the entity ends, each by one sort;
- fresh members' name tokens go to ``member_tokens_load``, one row per member (its tokens end to end, their
  ranks as the code points of a string), and move to ``member_tokens`` in key order when the entity ends.

Each step commits with the chunk it belongs to, so a bootstrap killed midway resumes where it stood. What
ends up stored is the same as row by row. Members the store itself writes meanwhile go straight to
``member_tokens``, as always; a staged token of a member erased meanwhile is not moved.
"""

from __future__ import annotations

import json
import sqlite3

from tenpo.edge.outbox import get_meta, set_meta
from tenpo.shared.pii import TOKEN_BYTES

STAGING = "member_tokens_load"
DEFERRED = "snapshot_deferred_indexes"  # meta: JSON list of the CREATE INDEX statements to run at the end


def begin(conn: sqlite3.Connection) -> None:
    """Before a members chunk of a snapshot (idempotent): staging table present, secondary indexes dropped."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {STAGING} (member_id TEXT NOT NULL, tokens BLOB NOT NULL,"
                 " ranks TEXT NOT NULL)")  # fmt: skip
    found = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'members' AND sql IS NOT NULL"
    ).fetchall()
    if not found:
        return
    held = json.loads(get_meta(conn, DEFERRED) or "[]")
    set_meta(conn, DEFERRED, json.dumps(held + [sql for _name, sql in found]))
    for name, _sql in found:
        conn.execute(f'DROP INDEX "{name}"')


STAGE = f"INSERT INTO {STAGING}(member_id, tokens, ranks) VALUES (?, ?, ?)"


def staging(conn: sqlite3.Connection, snapshot: bool) -> bool:
    """True while a snapshot's members are applied: fresh members' tokens go to the staging table (``packed``)."""
    return snapshot and _exists(conn)


def packed(member_id: str, tokens: dict[bytes, int]) -> tuple[str, bytes, str]:
    """A member's staging row: its tokens end to end, each rank (1..255) as one character."""
    return member_id, b"".join(tokens), "".join(map(chr, tokens.values()))


def _exists(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (STAGING,)).fetchone() is not None


def finish(conn: sqlite3.Connection) -> None:
    """When the members entity ends (and again when the snapshot does; idempotent): tokens moved in key order,
    the staging table dropped, the deferred indexes created."""
    if _exists(conn):
        most = int(conn.execute(f"SELECT coalesce(max(length(ranks)), 0) FROM {STAGING}").fetchone()[0])
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)"
            " INSERT OR IGNORE INTO member_tokens(token, rank, member_id)"
            f" SELECT substr(l.tokens, n.i * {TOKEN_BYTES} + 1, {TOKEN_BYTES}), unicode(substr(l.ranks, n.i + 1, 1)),"
            f" l.member_id FROM {STAGING} l JOIN members m ON m.member_id = l.member_id JOIN n ON n.i < length(l.ranks)"
            " WHERE m.erased = 0 ORDER BY 1, 2, 3",
            (most,),
        )
        # Its pages hold only copies of tokens member_tokens keeps anyway: not worth zeroing them one by one.
        secure = int(conn.execute("PRAGMA secure_delete").fetchone()[0])
        conn.execute("PRAGMA secure_delete = OFF")
        try:
            conn.execute(f"DROP TABLE {STAGING}")
        finally:
            conn.execute(f"PRAGMA secure_delete = {secure}")
    for sql in json.loads(get_meta(conn, DEFERRED) or "[]"):
        conn.execute(sql.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1))
    set_meta(conn, DEFERRED, None)
