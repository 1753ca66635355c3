"""The store's keys for personal data: where the key-encryption key comes from, and the wrapped data key.

The key-encryption key (KEK) is read, in this order, from
1. ``$CREDENTIALS_DIRECTORY/tenpo-store-key`` when systemd passed it (``LoadCredentialEncrypted=``,
   sealed to the TPM where there is one: the key never lies on the disk in the clear);
2. the key file the store config names (``[keys] data = "..."``), 0600;
3. the key file beside the database (``store.db`` -> ``store.datakey``), made by ``tenpo edge init``
   (or by the first open of a database that has no data key yet).
An in-memory database (tests) uses a key held by the process.

The data key (DEK) lives in the database, in ``pii_keys``, wrapped by the KEK; ``codec(conn)`` unwraps it
once per process and wrapped value (cached), so a rotation by another process is picked up at once.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tenpo.shared import pii
from tenpo.shared.errors import ConfigError
from tenpo.shared.filemodes import PRIVATE_FILE, private_dir

CREDENTIAL_NAME = "tenpo-store-key"
KEY_SUFFIX = ".datakey"
WRAP_LABEL = "tenpo-store-data-key"

_MEMORY_KEK = pii.new_key()
_configured: dict[str, Path] = {}
_cache: dict[tuple[str, bytes], pii.Codec] = {}
_lock = threading.Lock()


class KeyError_(ConfigError):
    """The store key is missing or does not open the data key: one line saying which file to check."""


@dataclass(frozen=True, slots=True)
class KeySource:
    kind: str  # "credential", "file", "memory"
    path: Path | None

    def describe(self) -> str:
        if self.kind == "credential":
            return f"systemd credential {self.path}"
        return f"key file {self.path}" if self.path else "in-memory key (this process only)"


def default_key_path(database: Path) -> Path:
    return database.with_suffix(KEY_SUFFIX)


def configured_key_path(database: Path, raw_keys: dict[str, object], config_dir: Path) -> Path:
    """The data key file for a store: ``[keys] data`` (relative to the config's folder) or beside the database."""
    value = raw_keys.get("data")
    if isinstance(value, str) and value.strip():
        path = Path(value.strip())
        return path if path.is_absolute() else (config_dir / path).resolve()
    return default_key_path(database)


def configure(database: Path, key_file: Path) -> None:
    """Use ``key_file`` for the database at ``database`` in this process (the store config's choice)."""
    _configured[str(Path(database).resolve())] = key_file


def _database_file(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row and row[2] else ""


def source_for(database: str) -> KeySource:
    if not database:
        return KeySource("memory", None)
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).is_file():
        return KeySource("credential", Path(credentials) / CREDENTIAL_NAME)
    path = Path(database)
    return KeySource("file", _configured.get(str(path.resolve()), default_key_path(path)))


def read_kek(source: KeySource) -> bytes:
    if source.path is None:
        return _MEMORY_KEK
    try:
        return pii.parse_key(source.path.read_bytes())
    except FileNotFoundError:
        raise KeyError_(f"{source.describe()}: not found; it holds the key to this store's personal data (restore "
                        "it from where you keep its copy; `tenpo edge keys status` shows which key is expected)") from None
    except OSError as exc:
        raise KeyError_(f"{source.describe()}: cannot read ({exc})") from None
    except pii.PiiError as exc:
        raise KeyError_(f"{source.describe()}: {exc}") from None


def write_key_file(path: Path, key: bytes) -> None:
    """A new key file, 0600 in a 0700 folder, written whole and synced; never overwrites."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pii.format_key(key))
        handle.flush()
        os.fsync(handle.fileno())


def ensure_key_file(path: Path) -> bool:
    """Create a key file at ``path`` unless one is there; True when created."""
    if path.exists():
        return False
    write_key_file(path, pii.new_key())
    return True


# ---------------------------------------------------------------------------- the data key


def create_table(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS pii_keys (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            wrapped BLOB NOT NULL,       -- the data key, AES-256-GCM under the key-encryption key
            kek_id TEXT NOT NULL,        -- fingerprint of the key-encryption key that wraps it
            dek_id TEXT NOT NULL,        -- fingerprint of the data key
            created_at REAL NOT NULL,
            kek_rotated_at REAL,
            dek_rotated_at REAL)"""
    )


def ensure_data_key(conn: sqlite3.Connection) -> pii.Codec:
    """The database's data key, made (and its key file, when missing) if it has none; inside a transaction."""
    create_table(conn)
    if conn.execute("SELECT 1 FROM pii_keys WHERE id = 1").fetchone() is None:
        source = source_for(_database_file(conn))
        if source.kind == "file" and source.path is not None:
            ensure_key_file(source.path)
        kek = read_kek(source)
        dek = pii.new_key()
        conn.execute(
            "INSERT INTO pii_keys(id, wrapped, kek_id, dek_id, created_at) VALUES (1, ?, ?, ?, ?)",
            (pii.wrap_key(kek, dek, WRAP_LABEL), pii.fingerprint(kek), pii.fingerprint(dek), time.time()),
        )
    return codec(conn)


def codec(conn: sqlite3.Connection) -> pii.Codec:
    """The codec of this database's data key (unwrapped once per process and wrapped value)."""
    row = conn.execute("SELECT wrapped, kek_id FROM pii_keys WHERE id = 1").fetchone()
    if row is None:
        raise KeyError_("this database has no data key yet: open it with `tenpo edge init` or upgrade it")
    wrapped, kek_id = bytes(row[0]), str(row[1])
    database = _database_file(conn)
    cache_key = (database or "memory", wrapped)
    with _lock:
        found = _cache.get(cache_key)
    if found is not None:
        return found
    kek = _find_kek(source_for(database), kek_id)
    try:
        made = pii.Codec(pii.unwrap_key(kek, wrapped, WRAP_LABEL))
    except pii.PiiError as exc:
        raise KeyError_(f"{source_for(database).describe()}: {exc}") from None
    with _lock:
        if len(_cache) > 64:
            _cache.clear()
        _cache[cache_key] = made
    return made


def forget() -> None:
    """Drop every unwrapped data key this process holds."""
    with _lock:
        _cache.clear()


def _find_kek(source: KeySource, kek_id: str) -> bytes:
    """The KEK that wrapped the data key; a rotation interrupted between its commit and the rename of
    the new key file leaves the new key at ``<file>.new``: it is tried too."""
    kek = read_kek(source)
    if pii.fingerprint(kek) == kek_id or source.path is None:
        return kek
    pending = source.path.with_name(source.path.name + ".new")
    if pending.is_file():
        candidate = read_kek(KeySource(source.kind, pending))
        if pii.fingerprint(candidate) == kek_id:
            return candidate
    raise KeyError_(f"{source.describe()}: key {pii.fingerprint(kek)} is not the key {kek_id} that wraps this "
                    "store's data key (another store's key file, or an old one)")


@dataclass(frozen=True, slots=True)
class KeyStatus:
    source: str
    kek_id: str
    dek_id: str
    created_at: float
    kek_rotated_at: float | None
    dek_rotated_at: float | None
    opens: bool
    problem: str | None


def status(conn: sqlite3.Connection) -> KeyStatus:
    row = conn.execute(
        "SELECT kek_id, dek_id, created_at, kek_rotated_at, dek_rotated_at FROM pii_keys WHERE id = 1"
    ).fetchone()
    source = source_for(_database_file(conn))
    if row is None:
        return KeyStatus(source.describe(), "-", "-", 0.0, None, None, False, "no data key in this database")
    problem = None
    try:
        codec(conn)
    except ConfigError as exc:
        problem = str(exc)
    return KeyStatus(source.describe(), row[0], row[1], row[2], row[3], row[4], problem is None, problem)


def rewrap(conn: sqlite3.Connection, new_kek: bytes) -> None:
    """Wrap the same data key under ``new_kek`` (inside the caller's transaction): instant, nothing re-sealed."""
    dek = codec(conn).dek
    conn.execute(
        "UPDATE pii_keys SET wrapped = ?, kek_id = ?, kek_rotated_at = ? WHERE id = 1",
        (pii.wrap_key(new_kek, dek, WRAP_LABEL), pii.fingerprint(new_kek), time.time()),
    )


def replace_data_key(conn: sqlite3.Connection, new_dek: bytes) -> None:
    """Store a new data key under the current KEK (inside the caller's transaction, with the re-sealing)."""
    source = source_for(_database_file(conn))
    row = conn.execute("SELECT kek_id FROM pii_keys WHERE id = 1").fetchone()
    kek = _find_kek(source, str(row[0]))
    conn.execute(
        "UPDATE pii_keys SET wrapped = ?, dek_id = ?, dek_rotated_at = ? WHERE id = 1",
        (pii.wrap_key(kek, new_dek, WRAP_LABEL), pii.fingerprint(new_dek), time.time()),
    )


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
