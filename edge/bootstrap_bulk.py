"""A bootstrap's members are bulk-loaded: their search indexes are built once at the end, not row by row.

The blind indexes on ``members`` (phone, email, card...) and the name tokens' primary key are keyed HMACs:
random keys. Inserted chunk by chunk into B-trees larger than SQLite's cache, each chunk of a million-member
bootstrap rewrote most of their pages. Instead, while the members entity of a snapshot is applied:

- the members' secondary indexes are dropped (their ``CREATE INDEX`` text kept in ``meta``) and created again
  when the entity ends, each by one sort;
- fresh members' name tokens go to ``member_tokens_load``, one row per member (its tokens end to end, their
  ranks as the code points of a string), and move to ``member_tokens`` in key order.

Each step commits with the chunk it belongs to, so a bootstrap killed midway resumes where it stood. What
ends up stored is the same as row by row. Members the store itself writes meanwhile go straight to
``member_tokens`` and are listed in ``member_tokens_rewritten`` (edge/membership/vault.py): their staged
tokens, older, are not moved; nor are an erased member's.

Issue 19 §5: moving 16 million tokens (a million members) takes longer than loading the members. The agent
finishes the bootstrap without them (``finish(defer_tokens=True)``: members, blind indexes and exact lookups
usable, the change feed resumes) and ``build_tokens`` moves them afterwards, on its own connection: sorted
once into a scratch database beside the replica (no lock on the replica meanwhile), then copied in key
order a slice per transaction, so the till and the feed never wait long for the write lock. Until it is
done, ``meta.search_tokens_pending`` is set and a name search finds only members written since.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from tenpo.edge.membership.vault import TOKENS_REWRITTEN
from tenpo.edge.outbox import get_meta, set_meta
from tenpo.shared.filemodes import PRIVATE_FILE
from tenpo.shared.pii import TOKEN_BYTES

STAGING = "member_tokens_load"
DEFERRED = "snapshot_deferred_indexes"  # meta: JSON list of the CREATE INDEX statements to run at the end
PENDING = "search_tokens_pending"  # meta: "1" from a deferred finish until build_tokens has moved the tokens
SCRATCH_SUFFIX = "-tokens"  # store.db-tokens: the staged tokens in key order while build_tokens runs
SLICE_ROWS = 200_000  # tokens copied per write transaction (a fraction of a second)


def begin(conn: sqlite3.Connection) -> None:
    """Before a members chunk of a snapshot (idempotent): staging table present, secondary indexes dropped."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {STAGING} (member_id TEXT NOT NULL, tokens BLOB NOT NULL,"
                 " ranks TEXT NOT NULL)")  # fmt: skip
    _create_rewritten(conn)
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


def _rewritten_table(conn: sqlite3.Connection) -> bool:
    """Whether ``member_tokens_rewritten`` is there (a staging table of an older agent may lack it)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TOKENS_REWRITTEN,)).fetchone() is not None


def _create_rewritten(conn: sqlite3.Connection) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {TOKENS_REWRITTEN} (member_id TEXT PRIMARY KEY) WITHOUT ROWID")


def _unpacked(conn: sqlite3.Connection) -> tuple[str, tuple[int]]:
    """SELECT (token, rank, member_id) of every staged token of a member still held and not erased, in key order."""
    most = int(conn.execute(f"SELECT coalesce(max(length(ranks)), 0) FROM {STAGING}").fetchone()[0])
    return (
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)"
        f" SELECT substr(l.tokens, n.i * {TOKEN_BYTES} + 1, {TOKEN_BYTES}), unicode(substr(l.ranks, n.i + 1, 1)),"
        f" l.member_id FROM {STAGING} l JOIN members m ON m.member_id = l.member_id JOIN n ON n.i < length(l.ranks)"
        f" WHERE m.erased = 0 AND l.member_id NOT IN (SELECT member_id FROM {TOKENS_REWRITTEN}) ORDER BY 1, 2, 3",
        (most,),
    )


def finish(conn: sqlite3.Connection, defer_tokens: bool = False) -> None:
    """When the members entity ends (and again when the snapshot does; idempotent): the deferred indexes
    created; the tokens moved in key order and the staging table dropped, or with ``defer_tokens`` left for
    ``build_tokens`` (``meta.search_tokens_pending``)."""
    if _exists(conn):
        if defer_tokens:
            set_meta(conn, PENDING, "1")
        else:
            _create_rewritten(conn)
            select, params = _unpacked(conn)
            conn.execute(f"INSERT OR IGNORE INTO member_tokens(token, rank, member_id) {select}", params)
            _drop_staging(conn)
    for sql in json.loads(get_meta(conn, DEFERRED) or "[]"):
        conn.execute(sql.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1))
    set_meta(conn, DEFERRED, None)


def pending(conn: sqlite3.Connection) -> bool:
    """A finished bootstrap's name tokens still wait for ``build_tokens``."""
    return get_meta(conn, PENDING) == "1"


def build_tokens(conn: sqlite3.Connection, slice_rows: int = SLICE_ROWS) -> int:
    """Move a deferred bootstrap's tokens into ``member_tokens`` (see the module's docstring); the number of
    tokens staged. Run on a connection of its own, outside any transaction; killed midway, it starts over
    (the slices already copied are kept: INSERT OR IGNORE)."""
    if not pending(conn) or not _exists(conn):
        if pending(conn):
            with _immediate(conn):
                set_meta(conn, PENDING, None)
        return 0
    if not _rewritten_table(conn):
        with _immediate(conn):
            _create_rewritten(conn)
    scratch = _scratch_path(conn)
    _remove(scratch)
    if scratch:
        os.close(os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    conn.execute("ATTACH DATABASE ? AS scratch", (scratch,))
    try:
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "secure_delete = OFF", "cache_size = -256"):
            conn.execute(f"PRAGMA scratch.{pragma}")
        # Sorted once into the scratch file: its rowids are then the tokens' key order. A deferred transaction
        # writes the scratch file only: the replica stays open to every writer meanwhile.
        conn.execute("BEGIN")
        try:
            conn.execute("CREATE TABLE scratch.sorted (token BLOB, rank INTEGER, member_id TEXT)")
            select, params = _unpacked(conn)
            conn.execute(f"INSERT INTO scratch.sorted(token, rank, member_id) {select}", params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        total = int(conn.execute("SELECT coalesce(max(rowid), 0) FROM scratch.sorted").fetchone()[0])
        for first in range(1, total + 1, slice_rows):
            with _immediate(conn):
                # A member the store rewrote since the sort (vault.tokens_rewritten) keeps its own tokens.
                conn.execute(
                    "INSERT OR IGNORE INTO member_tokens(token, rank, member_id) SELECT token, rank, member_id"
                    " FROM scratch.sorted WHERE rowid BETWEEN ? AND ?"
                    f" AND member_id NOT IN (SELECT member_id FROM {TOKENS_REWRITTEN}) ORDER BY rowid",
                    (first, first + slice_rows - 1),
                )
        with _immediate(conn):
            _drop_staging(conn)
            set_meta(conn, PENDING, None)
    finally:
        conn.execute("DETACH DATABASE scratch")
        _remove(scratch)
    return total


def _drop_staging(conn: sqlite3.Connection) -> None:
    # Its pages hold only copies of tokens member_tokens keeps anyway: not worth zeroing them one by one.
    secure = int(conn.execute("PRAGMA secure_delete").fetchone()[0])
    conn.execute("PRAGMA secure_delete = OFF")
    try:
        conn.execute(f"DROP TABLE {STAGING}")
        conn.execute(f"DROP TABLE IF EXISTS {TOKENS_REWRITTEN}")
    finally:
        conn.execute(f"PRAGMA secure_delete = {secure}")


def _scratch_path(conn: sqlite3.Connection) -> str:
    """Beside the replica ("" for a database without a file: SQLite's own temporary database)."""
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) + SCRATCH_SUFFIX if row and row[2] else ""


def _remove(path: str) -> None:
    if path:
        for leftover in (path, path + "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(leftover).unlink()


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
