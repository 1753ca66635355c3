"""A bootstrap's members are bulk-loaded: their search indexes are built once at the end, not row by row.

The blind indexes on ``members`` (phone, email, card...) and the name tokens' primary key are keyed HMACs:
random keys. Inserted chunk by chunk into B-trees larger than SQLite's cache, each chunk of a million-member
bootstrap rewrote most of their pages. Instead, while the members entity of a snapshot is applied:

- the members' secondary indexes are dropped (their ``CREATE INDEX`` text kept in ``meta``) and created again
  when the entity ends, each by one sort;
- fresh members are listed in ``member_tokens_load``; their name tokens are computed afterwards, from their
  sealed name and reading, one row per member (its tokens end to end, their ranks as the code points of a
  string), and moved to ``member_tokens`` in key order.

Each step commits with the chunk it belongs to, so a bootstrap killed midway resumes where it stood. What
ends up stored is the same as row by row. Members the store itself writes meanwhile go straight to
``member_tokens`` and are listed in ``member_tokens_rewritten`` (edge/membership/vault.py): their staged
tokens, older, are not moved; nor are an erased member's.

Issue 19 §5: computing and moving 16 million tokens (a million members) takes longer than loading the
members. The agent finishes the bootstrap without them (``finish(defer_tokens=True)``: members, blind indexes
and exact lookups usable, the change feed resumes) and ``build_tokens`` makes them afterwards, on its own
connection: computed and sorted once into a scratch database beside the replica (no lock on the replica
meanwhile), then copied in key order a slice per transaction, so the till and the feed never wait long for
the write lock. Until it is done, ``meta.search_tokens_pending`` is set and a name search finds only members
written since.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from tenpo.edge import keystore
from tenpo.edge.membership import vault
from tenpo.edge.membership.vault import TOKENS_REWRITTEN
from tenpo.edge.outbox import get_meta, set_meta
from tenpo.shared.filemodes import PRIVATE_FILE
from tenpo.shared.pii import TOKEN_BYTES

STAGING = "member_tokens_load"
DEFERRED = "snapshot_deferred_indexes"  # meta: JSON list of the CREATE INDEX statements to run at the end
PENDING = "search_tokens_pending"  # meta: "1" from a deferred finish until build_tokens has moved the tokens
SCRATCH_SUFFIX = "-tokens"  # store.db-tokens: the staged tokens in key order while build_tokens runs
SLICE_ROWS = 200_000  # tokens copied per write transaction (a fraction of a second)
PACKED = "member_tokens_packed"  # the staged members' tokens as computed (a temp. or scratch. table)
FILL_MEMBERS = 5_000  # members whose tokens are computed per read of the replica


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


def staging(conn: sqlite3.Connection, snapshot: bool) -> bool:
    """True while a snapshot's members are applied: fresh members go to the staging table (``stage_inserted``)."""
    return snapshot and _exists(conn)


def last_rowid(conn: sqlite3.Connection) -> int:
    """The members' highest rowid: the rows inserted after this get higher ones (SQLite takes the highest
    plus one while that is below 2**63 - 1, which a members table never reaches)."""
    return int(conn.execute("SELECT coalesce(max(rowid), 0) FROM members").fetchone()[0])


def stage_inserted(conn: sqlite3.Connection, after_rowid: int) -> None:
    """The members inserted since ``last_rowid`` said ``after_rowid``, staged without tokens: they are
    computed from their sealed name and reading when moved. One statement, no row crosses into Python."""
    conn.execute(f"INSERT INTO {STAGING}(member_id, tokens, ranks) SELECT member_id, x'', '' FROM members"
                 " WHERE rowid > ?", (after_rowid,))  # fmt: skip


def packed(member_id: str, tokens: dict[bytes, int]) -> tuple[str, bytes, str]:
    """A member's packed tokens: end to end, each rank (1..255) as one character."""
    return member_id, b"".join(tokens), "".join(map(chr, tokens.values()))


def _exists(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (STAGING,)).fetchone() is not None
    )


def _rewritten_table(conn: sqlite3.Connection) -> bool:
    """Whether ``member_tokens_rewritten`` is there (a staging table of an older agent may lack it)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TOKENS_REWRITTEN,)).fetchone() is not None


def _create_rewritten(conn: sqlite3.Connection) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {TOKENS_REWRITTEN} (member_id TEXT PRIMARY KEY) WITHOUT ROWID")


def _fill(conn: sqlite3.Connection, target: str, in_transaction: bool) -> None:
    """Each staged member still held, not erased and not rewritten since: its packed tokens into ``target``
    (member_id, tokens, ranks), computed from its sealed name and reading (an older agent's staged tokens as
    they are). ``in_transaction`` False: each batch reads the replica in a transaction of its own."""
    codec = keystore.codec(conn)
    todo = (f"SELECT l.rowid, l.member_id, l.tokens, l.ranks, m.name, m.kana FROM {STAGING} l"
            " JOIN members m ON m.member_id = l.member_id WHERE l.rowid > ? AND m.erased = 0"
            f" AND l.member_id NOT IN (SELECT member_id FROM {TOKENS_REWRITTEN}) ORDER BY l.rowid LIMIT ?")  # fmt: skip
    insert = f"INSERT INTO {target}(member_id, tokens, ranks) VALUES (?, ?, ?)"
    after = 0
    while True:
        with contextlib.nullcontext() if in_transaction else _deferred(conn):
            batch = conn.execute(todo, (after, FILL_MEMBERS)).fetchall()
            conn.executemany(insert, [
                (member_id, tokens, ranks) if ranks else packed(member_id, codec.name_tokens(
                    vault.open_value(codec, name, "name", member_id), vault.open_value(codec, kana, "kana", member_id)))
                for _rowid, member_id, tokens, ranks, name, kana in batch])  # fmt: skip
        if len(batch) < FILL_MEMBERS:
            return
        after = batch[-1][0]


def _unpacked(conn: sqlite3.Connection, source: str) -> tuple[str, tuple[int]]:
    """SELECT (token, rank, member_id) of every token packed in ``source``, in key order."""
    most = int(conn.execute(f"SELECT coalesce(max(length(ranks)), 0) FROM {source}").fetchone()[0])
    return (
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)"
        f" SELECT substr(p.tokens, n.i * {TOKEN_BYTES} + 1, {TOKEN_BYTES}), unicode(substr(p.ranks, n.i + 1, 1)),"
        f" p.member_id FROM {source} p JOIN n ON n.i < length(p.ranks) ORDER BY 1, 2, 3",
        (most,),
    )


def finish(conn: sqlite3.Connection, defer_tokens: bool = False) -> None:
    """When the members entity ends (and again when the snapshot does; idempotent): the deferred indexes
    created; the tokens computed, moved in key order and the staging table dropped, or with ``defer_tokens``
    left for ``build_tokens`` (``meta.search_tokens_pending``)."""
    if _exists(conn):
        if defer_tokens:
            set_meta(conn, PENDING, "1")
        else:
            _create_rewritten(conn)
            conn.execute(f"CREATE TEMP TABLE {PACKED} (member_id TEXT, tokens BLOB, ranks TEXT)")
            try:
                _fill(conn, f"temp.{PACKED}", in_transaction=True)
                select, params = _unpacked(conn, f"temp.{PACKED}")
                conn.execute(f"INSERT OR IGNORE INTO member_tokens(token, rank, member_id) {select}", params)
            finally:
                conn.execute(f"DROP TABLE temp.{PACKED}")
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
        # Computed into the scratch file a batch per read, then sorted once: its rowids are then the tokens' key
        # order. Those transactions write the scratch file only: the replica stays open to every writer meanwhile.
        conn.execute(f"CREATE TABLE scratch.{PACKED} (member_id TEXT, tokens BLOB, ranks TEXT)")
        _fill(conn, f"scratch.{PACKED}", in_transaction=False)
        with _deferred(conn):
            conn.execute("CREATE TABLE scratch.sorted (token BLOB, rank INTEGER, member_id TEXT)")
            select, params = _unpacked(conn, f"scratch.{PACKED}")
            conn.execute(f"INSERT INTO scratch.sorted(token, rank, member_id) {select}", params)
            conn.execute(f"DROP TABLE scratch.{PACKED}")
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


def worker_dir(conn: sqlite3.Connection) -> str:
    """store.db-bootstrap: the bootstrap worker's scratch files, beside the replica ("" for a database
    without a file)."""
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) + "-bootstrap" if row and row[2] else ""


def _remove(path: str) -> None:
    if path:
        for leftover in (path, path + "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(leftover).unlink()


@contextlib.contextmanager
def _deferred(conn: sqlite3.Connection) -> Iterator[None]:
    with _transaction(conn, "BEGIN"):
        yield


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    with _transaction(conn, "BEGIN IMMEDIATE"):
        yield


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, begin: str) -> Iterator[None]:
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
