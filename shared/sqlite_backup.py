"""Online copies of a live SQLite file, for the store's replica and a SQLite HQ alike.

The copy is taken with SQLite's backup API in one step (one read transaction: a consistent moment,
and under WAL the writers keep going), into a file created 0600 inside a 0700 directory, checked with
``PRAGMA integrity_check`` and published by rename, so a reader never sees half a backup.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path


class BackupFailed(Exception):
    """The copy could not be made or is not sound; nothing was published."""


def private_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)


def free_name(directory: Path, prefix: str, now: float) -> Path:
    """``{prefix}-{UTC stamp}.db``, with a counter when two backups fall in one second."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    target = directory / f"{prefix}-{stamp}.db"
    counter = 1
    while target.exists():
        target = directory / f"{prefix}-{stamp}-{counter}.db"
        counter += 1
    return target


def online_copy(source: Path, target: Path) -> None:
    """Copy the live file ``source`` into ``target`` (created 0600); other connections keep writing."""
    target.unlink(missing_ok=True)
    os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))  # never readable by others, even briefly
    reader = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    copy = sqlite3.connect(target)
    try:
        # pages=-1: the whole file in one step, so concurrent writes cannot make the copy restart or mix two
        # moments; the step releases the GIL, so the caller's event loop keeps running beside it.
        reader.backup(copy, pages=-1)
        copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
    except sqlite3.Error as exc:
        raise BackupFailed(f"copy of {source} failed: {exc}") from exc
    finally:
        copy.close()
        reader.close()


def take_backup(source: Path, target: Path, stamp: Callable[[sqlite3.Connection], None] | None = None) -> None:
    """Online copy into ``target``: ``stamp`` may write into the copy first; integrity_check; publish."""
    partial = target.with_name(target.name + ".partial")
    try:
        online_copy(source, partial)
        conn = sqlite3.connect(partial, isolation_level=None)
        try:
            if stamp is not None:
                conn.execute("BEGIN IMMEDIATE")
                stamp(conn)
                conn.execute("COMMIT")
            problems = [str(row[0]) for row in conn.execute("PRAGMA integrity_check(20)")]
        finally:
            conn.close()
        if problems != ["ok"]:
            raise BackupFailed(f"backup of {source}: the copy fails integrity_check ({problems[0]}); not kept")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def rotate(backups: list[Path], keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` of ``backups`` (given oldest first); the deleted ones."""
    removed = backups[: max(0, len(backups) - keep)]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
