"""Online backups of the store replica and restoring one without ever reusing a sequence number.

A backup is taken with SQLite's online backup API in one step: one read transaction, so the copy is
a consistent snapshot, and under WAL the checkout keeps writing meanwhile. The copy is checked with
``PRAGMA integrity_check``, stamped with the store id and schema version it belongs to, written 0600
into a 0700 directory and published by rename; only the newest ``keep`` copies of this store are kept.

Restoring follows the stream rules of docs/protocol.md: HQ may already hold events the old database
numbered after the backup was taken, so the restored file starts a **new stream** at seq 1 (HQ's rule for a
replaced database) and the events that were unacknowledged when the backup was taken move to the
store's dead letters instead of being resent: HQ applies nothing twice and no number is reused.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenpo.edge import db as edge_db
from tenpo.edge.config import StoreConfig
from tenpo.edge.membership.sealing import SEALED_PREFIX
from tenpo.edge.outbox import get_meta, set_counter, set_meta
from tenpo.edge.replica import agent_link
from tenpo.shared.errors import ConfigError, UserError
from tenpo.shared.sqlite_backup import BackupFailed, free_name, online_copy, private_directory, rotate, take_backup

LAST_BACKUP_META_KEY = "backup.last"
STORE_ID_META_KEY = "backup.store_id"
TAKEN_AT_META_KEY = "backup.taken_at"
RESTORED_META_KEY = "restored"
_NAME = re.compile(r"^tenpo-(?P<store>[A-Za-z0-9_-]{1,32})-(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?\.db$")


@dataclass(frozen=True, slots=True)
class BackupSettings:
    """``[backup]`` in the store TOML: ``dir`` (default ``backups`` beside the database), ``keep``
    (newest copies kept, default 7) and ``hour`` (local hour of the nightly backup, default 3)."""

    directory: Path
    keep: int = 7
    hour: int = 3


def backup_settings(config: StoreConfig) -> BackupSettings:
    section = config.section("backup")
    unknown = set(section) - {"dir", "keep", "hour"}
    if unknown:
        raise ConfigError(f"config {config.path}: backup.{sorted(unknown)[0]}: unknown setting")
    directory = Path(str(section.get("dir", "backups")))
    if not directory.is_absolute():
        directory = config.database.parent / directory
    values: dict[str, int] = {}
    for key, low, high in (("keep", 1, 1000), ("hour", 0, 23)):
        if key in section:
            value = section[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"config {config.path}: backup.{key}: must be a whole number {low}-{high}, got {value!r}")
            values[key] = value
    return BackupSettings(directory, **values)


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    size: int
    seconds: float
    removed: list[Path]

    def as_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "size": self.size, "seconds": round(self.seconds, 3),
                "removed": [str(p) for p in self.removed]}  # fmt: skip


def backup_store(database: Path, store_id: str, directory: Path, keep: int = 7, now: float | None = None) -> BackupResult:
    """Copy the live replica into ``directory`` while other connections keep writing; rotate to ``keep``."""
    edge_db.must_exist(database)
    started = time.monotonic()
    now = time.time() if now is None else now
    private_directory(directory)
    target = free_name(directory, f"tenpo-{store_id}", now)

    def stamp(conn: sqlite3.Connection) -> None:  # restore checks whose backup it is
        set_meta(conn, STORE_ID_META_KEY, store_id)
        set_meta(conn, TAKEN_AT_META_KEY, repr(now))
        set_meta(conn, LAST_BACKUP_META_KEY, None)

    try:
        take_backup(database, target, stamp)
    except BackupFailed as exc:
        raise edge_db.StoreDatabaseError(str(exc)) from None
    size = target.stat().st_size
    removed = rotate(store_backups(directory, store_id), keep)
    seconds = time.monotonic() - started
    _note_last_backup(database, {"path": str(target), "at": now, "size": size, "seconds": round(seconds, 3)})
    return BackupResult(target, size, seconds, removed)


def _note_last_backup(database: Path, record: dict[str, Any]) -> None:
    """For `tenpo doctor` and the scheduler: when the last good backup was taken and where it is."""
    db = edge_db.connect(database, create=False)
    try:
        with edge_db.transaction(db) as conn:
            set_meta(conn, LAST_BACKUP_META_KEY, json.dumps(record))
    finally:
        db.conn.close()


def store_backups(directory: Path, store_id: str) -> list[Path]:
    """This store's backups in ``directory``, oldest first (names sort by time)."""
    if not directory.is_dir():
        return []
    found = [(m["stamp"], int(m["n"] or 0), p) for p in directory.iterdir()
             if (m := _NAME.match(p.name)) and m["store"] == store_id]  # fmt: skip
    return [p for _stamp, _n, p in sorted(found)]


def last_backup(conn: sqlite3.Connection) -> dict[str, Any] | None:
    text = get_meta(conn, LAST_BACKUP_META_KEY)
    return json.loads(text) if text else None


# ---------------------------------------------------------------------------- restore


@dataclass(frozen=True, slots=True)
class RestoreResult:
    restored_from: Path
    moved_aside: Path | None
    old_stream: str | None
    new_stream: str
    unsent_to_dead_letters: int
    schema_version: int

    def as_json(self) -> dict[str, Any]:
        return {"restored_from": str(self.restored_from), "moved_aside": str(self.moved_aside or "") or None,
                "old_stream": self.old_stream, "new_stream": self.new_stream,
                "unsent_to_dead_letters": self.unsent_to_dead_letters, "schema_version": self.schema_version}  # fmt: skip


def inspect_backup(path: Path, store_id: str) -> tuple[int, str | None]:
    """Refuse a backup that is damaged, of another store or of a newer schema; its (schema, stream)."""
    if not path.is_file():
        raise UserError(f"backup {path}: file not found")
    problems = edge_db.check_integrity(path)
    if problems:
        raise UserError(f"backup {path} is damaged ({problems[0]}): pick another backup")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        owner = get_meta(conn, STORE_ID_META_KEY)
        stream = get_meta(conn, "stream")
        version = int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0])
    except sqlite3.Error as exc:
        raise UserError(f"backup {path} is not a tenpo store backup ({exc})") from None
    finally:
        conn.close()
    if owner != store_id:
        raise UserError(f"backup {path} belongs to store {owner or '(unknown)'}, not {store_id}: refusing to restore it")
    newest = edge_db.MIGRATIONS[-1][0]
    if version > newest:
        raise UserError(f"backup {path} has schema version {version}, newer than this tenpo ({newest}): upgrade tenpo first")
    return version, stream


def restore_store(config: StoreConfig, backup: Path, now: float | None = None) -> RestoreResult:
    """Put ``backup`` in place of the replica (the old file is moved aside, never deleted)."""
    now = time.time() if now is None else now
    inspect_backup(backup, config.store_id)
    database = config.database
    if database.exists():
        _refuse_while_agent_runs(database)
    incoming = database.with_name(database.name + ".restoring")
    try:
        online_copy(backup, incoming)
    except BackupFailed as exc:
        raise UserError(str(exc)) from None
    aside = None
    if database.exists():
        aside = database.with_name(f"{database.name}.before-restore-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}")
        os.replace(database, aside)
    for suffix in ("-wal", "-shm", "-journal"):  # the old file's journal must not be replayed into the new one
        extra = database.with_name(database.name + suffix)
        if extra.exists():
            if aside is not None:
                os.replace(extra, aside.with_name(aside.name + suffix))
            else:
                extra.unlink()
    os.replace(incoming, database)
    db = edge_db.connect(database, create=False)  # migrates a backup of an older schema
    try:
        with edge_db.transaction(db) as conn:
            old_stream, moved = _start_new_stream(conn, backup, now)
            new_stream = get_meta(conn, "stream") or ""
        version = edge_db.schema_version(db)
    finally:
        db.conn.close()
    return RestoreResult(backup, aside, old_stream, new_stream, moved, version)


def _refuse_while_agent_runs(database: Path) -> None:
    try:
        conn = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
        try:
            running = agent_link(conn).running
        finally:
            conn.close()
    except sqlite3.Error:  # a damaged file: no agent can be using it
        return
    if running:
        raise UserError(f"store database {database} is in use by a running agent: stop it first "
                        "(systemctl stop tenpo-edge)")  # fmt: skip


def _kept(payload: str) -> Any:
    """An event's payload for its dead letter; one carrying personal data stays sealed (bound to its event id)."""
    return payload if payload.startswith(SEALED_PREFIX) else json.loads(payload)


def _start_new_stream(conn: sqlite3.Connection, backup: Path, now: float) -> tuple[str | None, int]:
    """The restored file's old stream ends: HQ may hold numbers the lost database used after the backup."""
    old_stream = get_meta(conn, "stream")
    rows = conn.execute("SELECT seq, id, type, schema, hlc, payload, created_at FROM outbox ORDER BY seq").fetchall()
    reason = (f"restored from {backup.name}: unacknowledged when the backup was taken; HQ may already hold it "
              f"(stream {old_stream}), so it is not resent — check HQ before entering it again")  # fmt: skip
    conn.executemany(
        "INSERT INTO dead_letters(source, reason, payload, created_at) VALUES ('restore', ?, ?, ?)",
        [(f"{reason} (seq {seq}, {etype})",
          json.dumps({"seq": seq, "id": eid, "type": etype, "schema": schema, "hlc": stamp, "payload": _kept(payload),
                      "created_at": created, "stream": old_stream}, ensure_ascii=False),
          now) for seq, eid, etype, schema, stamp, payload, created in rows],
    )  # fmt: skip
    conn.execute("DELETE FROM outbox")
    # A local points balance is HQ's plus entries numbered above `through`: the old stream's numbers mean
    # nothing in the new one (HQ's balance already holds what it applied of them), so they stop counting.
    conn.execute("UPDATE points_ledger SET store_seq = NULL WHERE store_seq IS NOT NULL")
    conn.execute("UPDATE members SET points_through = 0 WHERE points_through != 0")
    set_counter(conn, "outbox", 0)
    set_counter(conn, "acked", 0)
    set_meta(conn, "stream", uuid.uuid4().hex)
    for key in ("alert.hq_behind", "link", LAST_BACKUP_META_KEY):
        set_meta(conn, key, None)
    set_meta(conn, RESTORED_META_KEY, json.dumps({"from": str(backup), "at": now, "old_stream": old_stream,
                                                  "unsent_to_dead_letters": len(rows)}))  # fmt: skip
    return old_stream, len(rows)
