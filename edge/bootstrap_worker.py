"""A bootstrap's members chunks decoded and sealed by a forked process (issue 19 §5).

Decoding a members chunk and sealing its personal fields (with their blind indexes) is two thirds of a
bootstrap's CPU. On a machine with more than one core, for a large snapshot, the agent forks this worker
once the data key is loaded (the key reaches it as inherited memory, never over a pipe). It receives each
chunk's message bytes, in order, and writes the chunk's insert-ready rows, sealed, into a scratch SQLite
file of its own (no index); the agent copies them into ``members`` by one ``INSERT ... SELECT`` in the
chunk's transaction (``insert``), while the worker prepares the next chunk.

Nothing the worker does is durable: the replica changes only in the agent's chunk transaction, with the
resume point, as without it. A chunk the worker cannot prepare (not members, a row that does not fit, a
member twice) or a member the replica holds already goes the single-process way; a worker that dies or
answers out of turn is stopped and the rest of the bootstrap goes the single-process way too.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import msgspec

from tenpo.edge.membership import vault
from tenpo.shared import pii, protocol
from tenpo.shared.changes import MemberUpsert
from tenpo.shared.filemodes import PRIVATE_FILE

# The feed's own decoding and member columns, handed in by the agent (the feed sits above this module and
# hands its chunks here): the worker builds exactly the rows the single-process path would.
Decode = Callable[[bytes], Any]
Columns = Callable[[MemberUpsert, str, int, float], tuple[tuple[Any, ...], vault.Personal]]


@dataclass(frozen=True)
class Reader:
    decode: Decode  # a snapshot message -> its chunk (entity, rows), or raises
    columns: Columns  # a member -> its plain columns and personal fields


log = logging.getLogger(__name__)

MIN_MEMBERS = 50_000  # smaller snapshots: the fork and the scratch files are not worth it
PLAIN = ("consent", "custom", "home_store", "points_hq", "points_through", "version", "updated_at")
COLUMNS = (*PLAIN, "member_id", "created_at", *vault.STORED_COLUMNS)  # a scratch row, in this order
SLICE = 1000  # members built and sealed at a time: a whole chunk's intermediate rows were +10 MB of the worker's RSS
SCRATCH_CACHE_KB = 256  # a scratch file is written once, front to back: SQLite's default 2 MB cache buys nothing


class _Done(msgspec.Struct, frozen=True):
    seq: int  # the chunk's number in this worker's order
    rows: int  # -1: not prepared, the agent applies the chunk itself
    path: str = ""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A chunk as the worker left it: ``path`` its scratch file, or "" when not prepared."""

    rows: int
    path: str


class ChunkHead(msgspec.Struct, frozen=True):
    """A snapshot message's fields that decide whether to fork the worker."""

    entity: str = ""
    total: int = 0


_HEAD = msgspec.json.Decoder(ChunkHead)


def chunk_head(data: bytes) -> ChunkHead | None:
    """A snapshot message's entity and total, its rows skipped (whether to fork the bootstrap worker);
    None when it is no chunk (``decode_snapshot_chunk`` reports it)."""
    try:
        return _HEAD.decode(data)
    except (msgspec.DecodeError, RecursionError):  # RecursionError: nested too deep
        return None


def lean_decode(data: bytes, kind: type[msgspec.Struct]) -> Any:
    """``protocol.decode`` without its nesting pre-check, for a bootstrap's chunks handed to the worker: the
    check splits a 5,000-member message into 100,000 pieces (a 9.6 MB peak, in the RSS of each process that
    decodes it). msgspec's own recursion limit stops a message nested too deep: ProtocolError all the same."""
    return protocol.decode(data, kind, pre_check=False)


def wanted(total: int | None) -> bool:
    """A worker pays for a large snapshot on a machine with a core to spare."""
    if os.environ.get("TENPO_BOOTSTRAP_WORKER") == "0":  # the single-process path (an operator's way out, A/B runs)
        return False
    forks = "fork" in multiprocessing.get_all_start_methods()
    return (os.cpu_count() or 1) > 1 and (total or 0) >= MIN_MEMBERS and forks


class Worker:
    """The agent's end: ``submit`` each chunk message in arrival order, ``take`` their results in the same order."""

    def __init__(self, codec: pii.Codec, store_id: str, scratch_dir: str, reader: Reader) -> None:
        """``scratch_dir``: a directory of its own (made afresh, removed by ``close``)."""
        self._scratch = Path(scratch_dir)
        shutil.rmtree(self._scratch, ignore_errors=True)  # a killed agent's (its worker left with it)
        self._scratch.mkdir(mode=0o700)
        ours, theirs = multiprocessing.Pipe()
        gc.collect()  # what the fork inherits counts in the worker's RSS too: no garbage, and the free heap
        _trim()  # handed back to the system first
        # fork: the codec (and its data key) is in the child's copy of this memory, not sent.
        self._process: BaseProcess = multiprocessing.get_context("fork").Process(
            target=_serve,
            args=(theirs, ours, codec, store_id, str(self._scratch), reader),
            daemon=True,
            name="tenpo-bootstrap",
        )
        self._process.start()
        theirs.close()
        log.info("bootstrap worker %s decodes and seals the members chunks", self._process.pid)
        self._pipe = ours
        self._sent = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def submit(self, data: bytes) -> int:
        """Hand a chunk message over: its number, for ``take``."""
        self._pipe.send_bytes(data)
        self._sent += 1
        return self._sent

    def take(self, seq: int) -> Prepared:
        """Chunk ``seq``'s result (waits for it; those of chunks before it nobody took are dropped);
        OSError/EOFError/ValueError if the worker failed."""
        while True:
            done = msgspec.json.decode(self._pipe.recv_bytes(), type=_Done)
            if done.seq == seq:
                return Prepared(done.rows, done.path)
            if done.seq > seq:
                raise ValueError(f"bootstrap worker answered chunk {done.seq} for {seq}")
            discard(Prepared(done.rows, done.path))

    def close(self) -> None:
        """Stop the worker (it exits on the pipe's end) and remove its scratch files."""
        with contextlib.suppress(OSError):
            self._pipe.close()
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        shutil.rmtree(self._scratch, ignore_errors=True)


def _trim() -> None:
    """Free heap pages back to the system (glibc's malloc_trim)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def discard(prepared: Prepared) -> None:
    if prepared.path:
        Path(prepared.path).unlink(missing_ok=True)


def insert(conn: sqlite3.Connection, prepared: Prepared) -> bool:
    """In the chunk's transaction, with the scratch file attached as ``prep`` (``attached``): the prepared
    members into ``members``. False, and nothing written, when the replica holds one of them already."""
    if conn.execute("SELECT 1 FROM prep.rows r JOIN members m ON m.member_id = r.member_id LIMIT 1").fetchone():
        return False
    names = ", ".join(COLUMNS)
    conn.execute(f"INSERT INTO members({names}, beacon_secret, provisional, erased)"
                 f" SELECT {names}, NULL, 0, 0 FROM prep.rows ORDER BY rowid")  # fmt: skip
    return True


@contextlib.contextmanager
def attached(conn: sqlite3.Connection, prepared: Prepared) -> Iterator[None]:
    """The scratch file attached around the chunk's transaction (SQLite detaches only outside one)."""
    conn.execute("ATTACH DATABASE ? AS prep", (prepared.path,))
    conn.execute(f"PRAGMA prep.cache_size = -{SCRATCH_CACHE_KB}")  # read once, front to back
    try:
        yield
    finally:
        conn.execute("DETACH DATABASE prep")
        discard(prepared)


# ---------------------------------------------------------------------------- the forked process


def _serve(pipe: Connection, agents_end: Connection, codec: pii.Codec, store_id: str, scratch: str,
           reader: Reader) -> None:  # fmt: skip
    agents_end.close()  # the fork's copy: else the agent closing its end would not end this loop
    gc.freeze()  # the agent's objects, inherited: never traversed here (nor their pages copied)
    gc.disable()  # a chunk's rows are acyclic; the collector would only walk them
    _trim()  # the inherited heap's free pages, this copy's
    seq = 0
    while True:
        try:
            data = pipe.recv_bytes()
        except (EOFError, OSError):
            return
        seq += 1
        path = os.path.join(scratch, f"chunk-{seq}.db")
        rows = _prepare(codec, store_id, data, path, reader)
        pipe.send_bytes(msgspec.json.encode(_Done(seq, rows, path if rows >= 0 else "")))


def _prepare(codec: pii.Codec, store_id: str, data: bytes, path: str, reader: Reader) -> int:
    """The chunk's members, sealed, into a new scratch file at ``path``; -1 when the agent should apply it."""
    try:
        chunk = reader.decode(data)
    except Exception:  # noqa: BLE001 - the agent decodes it again and reports it
        return -1
    rows = chunk.rows
    if chunk.entity != "members" or not rows or not all(isinstance(r, MemberUpsert) for r in rows):
        return -1
    ids = [r.member_id for r in rows]
    if len(set(ids)) != len(ids):
        return -1
    now = time.time()
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE))
    out = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode = OFF", "synchronous = OFF", f"cache_size = -{SCRATCH_CACHE_KB}"):
            out.execute(f"PRAGMA {pragma}")
        out.execute(f"CREATE TABLE rows ({', '.join(COLUMNS)})")
        out.execute("BEGIN")
        insert = f"INSERT INTO rows VALUES ({', '.join('?' * len(COLUMNS))})"
        for start in range(0, len(rows), SLICE):  # a slice's rows at a time: the worker's peak RSS is a slice's
            part, part_ids = rows[start : start + SLICE], ids[start : start + SLICE]
            columns = [reader.columns(r, store_id, r.version, now) for r in part]
            sealed = vault.sealed_rows(codec, part_ids, [person for _row, person in columns])
            out.executemany(insert, ((*row, member_id, now, *values)
                                     for (row, _p), member_id, values in zip(columns, part_ids, sealed)))  # fmt: skip
            del columns, sealed
        out.execute("COMMIT")
    finally:
        out.close()
    return len(rows)


@dataclass(frozen=True, slots=True)
class Ticket:
    worker: Worker
    seq: int


class Pipeline:
    """The agent's side across a bootstrap: the worker started, fed from the network thread as each chunk
    arrives (so it prepares one while the agent inserts the one before), its results taken in order, and
    stopped when the bootstrap ends or the worker fails (the rest goes the single-process way)."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self._lock = threading.Lock()
        self._worker: Worker | None = None
        self.failed = False

    @property
    def idle(self) -> bool:
        """No worker runs and none failed: ``start`` would fork one."""
        return self._worker is None and not self.failed

    def start(self, codec: pii.Codec, store_id: str, scratch_dir: str, first: bytes | None = None) -> Ticket | None:
        """Fork the worker (if none runs); ``first``, a chunk message, is handed to it at once, before the
        network thread can hand it any other: to whom and its number there (None: not started now)."""
        with self._lock:
            if self._worker is None and not self.failed:
                try:
                    self._worker = Worker(codec, store_id, scratch_dir, self._reader)
                except OSError:
                    log.warning("bootstrap worker not started: the bootstrap goes on in this process", exc_info=True)
                    self.failed = True
                    return None
                if first is not None:
                    with contextlib.suppress(OSError, ValueError):  # gone already: take() notices and stops it
                        return Ticket(self._worker, self._worker.submit(first))
            return None

    def submit(self, data: bytes) -> Ticket | None:
        """(Network thread) hand a chunk message to the worker, if one runs: to whom and its number there."""
        with self._lock:
            worker = self._worker
            if worker is None:
                return None
            try:
                return Ticket(worker, worker.submit(data))
            except (OSError, ValueError):
                return None  # the worker is gone: take() notices and stops it

    def take(self, ticket: Ticket | None) -> Prepared | None:
        """(Agent's loop) the result of the message ``submit`` gave ``ticket``; None: decode it here."""
        if ticket is None or ticket.worker is not self._worker:
            return None
        try:
            return ticket.worker.take(ticket.seq)
        except (OSError, EOFError, ValueError):  # msgspec.DecodeError is a ValueError
            log.warning("bootstrap worker failed: the bootstrap goes on in this process", exc_info=True)
            self.stop(failed=True)
            return None

    def stop(self, failed: bool = False) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
            self.failed |= failed
        if worker is not None:
            worker.close()
