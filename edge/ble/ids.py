"""Members' beacon day keys at the store, instead of their secrets (issue 14).

HQ sends ``member.beacon_keys`` (tenpo.shared.changes.MemberBeaconKeys): a member's day keys for today
and tomorrow in JST (tenpo.shared.beacon_id.day_key). The store keeps (member_id, day, key) in
``beacon_keys`` (edge migration 19) and resolves an advert from ``beacon_window_ids``: every member's
identifier of the windows the beacon service asked for (the current one, its neighbours, the next),
computed from that day's keys in chunks straight into SQLite, so memory stays bounded by a chunk. It
never holds a secret: a copy of its disk names members for the days whose keys it holds and no other.
Migration 14 (the earlier scheme: a day of identifiers per member) wiped the secrets older versions
stored; migration 19 drops its table and has the file vacuumed (secure_delete is on; VACUUM and a WAL
truncate follow at the next open, as for the personal data of migration 9).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import sqlite_utils

from tenpo.edge.membership.sealing import VACUUM_META_KEY
from tenpo.shared.beacon_id import WINDOW_S, day_of_window, jst_day, rotating_id, window_of
from tenpo.shared.changes import MemberBeaconKeys, rows_of

IDS_VERSION_META = "beacon_ids.version"  # bumped on every change, so the beacon service reloads
CHUNK = 5000  # members per write transaction when a window's identifiers are computed


def migrate(db: sqlite_utils.Database) -> bool:
    conn = db.conn
    conn.execute(
        """CREATE TABLE beacon_ids (
            member_id TEXT NOT NULL,
            slot INTEGER NOT NULL,        -- the window counter (tenpo.shared.beacon_id.window_of)
            rid BLOB NOT NULL,            -- the 8-byte identifier the app advertises in that window
            PRIMARY KEY (member_id, slot)
        ) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX beacon_ids_slot ON beacon_ids(slot, rid)")
    # An erasure (HQ's member.erase, a merge's loser) takes the member's identifiers with it, whoever sets it.
    conn.execute(
        "CREATE TRIGGER beacon_ids_erased AFTER UPDATE OF erased ON members WHEN NEW.erased = 1"
        " BEGIN DELETE FROM beacon_ids WHERE member_id = NEW.member_id; END"
    )
    columns = {row[1] for row in conn.execute("PRAGMA table_info(members)")}
    if "beacon_secret" in columns:
        wiped = conn.execute("UPDATE members SET beacon_secret = NULL WHERE beacon_secret IS NOT NULL").rowcount
        if wiped:  # the freed bytes are zeroed (secure_delete); VACUUM and the WAL truncate at the next open
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, '1')", (VACUUM_META_KEY,))
    return True


def migrate_keys(db: sqlite_utils.Database) -> bool:
    """Migration 19: per-day keys replace migration 14's identifier lists, which are dropped and vacuumed."""
    conn = db.conn
    conn.execute(
        """CREATE TABLE beacon_keys (
            member_id TEXT NOT NULL,
            day TEXT NOT NULL,            -- JST date YYYYMMDD (tenpo.shared.beacon_id.jst_day)
            key BLOB NOT NULL,            -- the member's 16-byte day key
            PRIMARY KEY (member_id, day)
        ) WITHOUT ROWID"""
    )
    conn.execute(
        """CREATE TABLE beacon_window_ids (
            slot INTEGER NOT NULL,        -- the window counter
            prefix INTEGER NOT NULL,      -- the identifier's first 4 bytes (the iBeacon major/minor)
            member_id TEXT NOT NULL,
            rid BLOB NOT NULL,            -- the 8-byte identifier the app advertises in that window
            PRIMARY KEY (slot, member_id)
        ) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX beacon_window_ids_prefix ON beacon_window_ids(slot, prefix)")
    conn.execute("CREATE TABLE beacon_window_slots (slot INTEGER PRIMARY KEY)")  # windows computed
    conn.execute("DROP TRIGGER IF EXISTS beacon_ids_erased")
    had = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'beacon_ids'").fetchone()[0]
    if had:
        held = conn.execute("SELECT count(*) FROM beacon_ids").fetchone()[0]
        conn.execute("DROP TABLE beacon_ids")
        if held:  # the freed pages are zeroed (secure_delete); VACUUM and the WAL truncate at the next open
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, '1')", (VACUUM_META_KEY,))
    # An erasure (HQ's member.erase, a merge's loser) takes the member's keys and identifiers with it.
    conn.execute(
        "CREATE TRIGGER beacon_keys_erased AFTER UPDATE OF erased ON members WHEN NEW.erased = 1"
        " BEGIN DELETE FROM beacon_keys WHERE member_id = NEW.member_id;"
        " DELETE FROM beacon_window_ids WHERE member_id = NEW.member_id; END"
    )
    return True


def store_keys(conn: sqlite3.Connection, member_id: str, keys: list[tuple[str, bytes]]) -> int:
    """Keep ``member_id``'s day keys and redo their identifiers of the computed windows; in the caller's
    transaction. How many keys."""
    conn.executemany("INSERT OR REPLACE INTO beacon_keys(member_id, day, key) VALUES (?, ?, ?)",
                     [(member_id, day, key) for day, key in keys])  # fmt: skip
    by_day = dict(keys)
    erased = conn.execute("SELECT erased FROM members WHERE member_id = ?", (member_id,)).fetchone()
    rows = []
    if not (erased and erased[0]):
        for (slot,) in conn.execute("SELECT slot FROM beacon_window_slots").fetchall():
            key = by_day.get(day_of_window(int(slot)))
            if key is not None:
                rid = rotating_id(key, int(slot))
                rows.append((int(slot), int.from_bytes(rid[:4], "big"), member_id, rid))
    conn.executemany("INSERT OR REPLACE INTO beacon_window_ids(slot, prefix, member_id, rid) VALUES (?, ?, ?, ?)", rows)
    return len(keys)


def _bump(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?, '1') ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        (IDS_VERSION_META,),
    )


@rows_of(MemberBeaconKeys)
def _apply(conn: sqlite3.Connection, store_id: str, rows: list[MemberBeaconKeys], version: int | None) -> None:
    for r in rows:
        store_keys(conn, r.member_id, [(k.day, bytes.fromhex(k.key)) for k in r.keys])
    if rows:
        _bump(conn)


CHANGE_HANDLERS: dict[str, Any] = {"member.beacon_keys": _apply}
SNAPSHOT_HANDLERS: dict[str, Any] = {"beacon_keys": _apply}


def ids_version(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (IDS_VERSION_META,)).fetchone()
    return None if row is None else str(row[0])


def compute_window(conn: sqlite3.Connection, slot: int, chunk: int = CHUNK) -> int:
    """Every member's identifier of window ``slot`` into beacon_window_ids, ``chunk`` members per write
    transaction (one HMAC each, from the key of the window's JST day); how many. Idempotent."""
    day, after, done = day_of_window(slot), "", 0
    if conn.execute("SELECT 1 FROM beacon_window_slots WHERE slot = ?", (slot,)).fetchone():
        return 0
    own = not conn.in_transaction  # a caller's transaction (a test, a migration) is used as it is
    while True:
        if own:
            conn.execute("BEGIN IMMEDIATE")
        try:
            found = conn.execute(
                "SELECT k.member_id, k.key FROM beacon_keys k JOIN members m ON m.member_id = k.member_id"
                " WHERE k.day = ? AND k.member_id > ? AND m.erased = 0 ORDER BY k.member_id LIMIT ?",
                (day, after, chunk),
            ).fetchall()
            rows = []
            for member_id, key in found:
                rid = rotating_id(bytes(key), slot)
                rows.append((slot, int.from_bytes(rid[:4], "big"), member_id, rid))
            conn.executemany("INSERT OR REPLACE INTO beacon_window_ids(slot, prefix, member_id, rid)"
                             " VALUES (?, ?, ?, ?)", rows)  # fmt: skip
            if len(found) < chunk:
                conn.execute("INSERT OR IGNORE INTO beacon_window_slots(slot) VALUES (?)", (slot,))
            if own:
                conn.execute("COMMIT")
        except BaseException:
            if own and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        done += len(found)
        if len(found) < chunk:
            return done
        after = found[-1][0]


def window_rows(conn: sqlite3.Connection, first: int, last: int) -> Iterator[tuple[int, str, bytes]]:
    """(window, member_id, identifier) of windows first..last, members not erased, as a cursor (streamed);
    computes the windows not computed yet (outside any transaction of the caller's)."""
    for slot in range(first, last + 1):
        compute_window(conn, slot)
    cursor: Iterator[tuple[int, str, bytes]] = conn.execute(
        "SELECT b.slot, b.member_id, b.rid FROM beacon_window_ids b JOIN members m ON m.member_id = b.member_id"
        " WHERE b.slot BETWEEN ? AND ? AND m.erased = 0",
        (first, last),
    )
    return cursor


def load_windows(conn: sqlite3.Connection, first: int, last: int) -> dict[int, dict[str, bytes]]:
    """window -> {member_id: identifier} for windows first..last (for tools and tests: the beacon service
    streams :func:`window_rows` into its resolver instead of building this)."""
    tables: dict[int, dict[str, bytes]] = {}
    for slot, member_id, rid in window_rows(conn, first, last):
        tables.setdefault(int(slot), {})[member_id] = bytes(rid)
    return tables


def prune_ids(conn: sqlite3.Connection, now: float, window_s: int = WINDOW_S) -> int:
    """Identifiers of windows past, keys of days before yesterday (JST), and everything of an erased
    member; inside a transaction."""
    past = window_of(now, window_s) - 2
    old = conn.execute("DELETE FROM beacon_window_ids WHERE slot < ?", (past,)).rowcount
    conn.execute("DELETE FROM beacon_window_slots WHERE slot < ?", (past,))
    keys = conn.execute("DELETE FROM beacon_keys WHERE day < ?", (jst_day(now - 86400),)).rowcount
    erased = 0
    for table in ("beacon_keys", "beacon_window_ids"):
        erased += conn.execute(
            f"DELETE FROM {table} WHERE member_id IN (SELECT member_id FROM members WHERE erased = 1)"
        ).rowcount
    return int(old) + int(keys) + erased
