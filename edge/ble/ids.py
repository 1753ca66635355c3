"""Members' rotating beacon identifiers at the store, instead of their secrets (issue 14).

HQ sends ``member.beacon_ids`` (tenpo.shared.changes.MemberBeaconIds): a member's identifiers for a
bounded run of windows. The store keeps them in ``beacon_ids`` (edge migration 14) and resolves an
advert by looking the identifier up; it never holds a secret, so a copy of its disk cannot follow a
member beyond the issued windows nor make a phone's advert. Migration 14 wipes the secrets earlier
versions stored and has the file vacuumed (secure_delete is on; VACUUM and a WAL truncate follow at
the next open, as for the personal data of migration 9).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import sqlite_utils

from tenpo.edge.membership.sealing import VACUUM_META_KEY
from tenpo.shared.beacon_id import WINDOW_S, split_ids, window_of
from tenpo.shared.changes import MemberBeaconIds, rows_of

IDS_VERSION_META = "beacon_ids.version"  # bumped on every change, so the beacon service reloads


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


def store_ids(conn: sqlite3.Connection, member_id: str, first_window: int, ids_hex: str) -> int:
    """Replace what the store holds for ``member_id``; inside the caller's transaction. How many ids."""
    pairs = split_ids(ids_hex, first_window)
    conn.execute("DELETE FROM beacon_ids WHERE member_id = ?", (member_id,))
    conn.executemany("INSERT INTO beacon_ids(member_id, slot, rid) VALUES (?, ?, ?)",
                     [(member_id, slot, rid) for slot, rid in pairs])  # fmt: skip
    return len(pairs)


def _bump(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?, '1') ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        (IDS_VERSION_META,),
    )


@rows_of(MemberBeaconIds)
def _apply(conn: sqlite3.Connection, store_id: str, rows: list[MemberBeaconIds], version: int | None) -> None:
    for r in rows:
        store_ids(conn, r.member_id, r.first_window, r.ids)
    if rows:
        _bump(conn)


CHANGE_HANDLERS: dict[str, Any] = {"member.beacon_ids": _apply}
SNAPSHOT_HANDLERS: dict[str, Any] = {"beacon_ids": _apply}


def ids_version(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (IDS_VERSION_META,)).fetchone()
    return None if row is None else str(row[0])


def load_windows(conn: sqlite3.Connection, first: int, last: int) -> dict[int, dict[str, bytes]]:
    """window -> {member_id: identifier} for windows first..last, members not erased."""
    tables: dict[int, dict[str, bytes]] = {}
    for slot, member_id, rid in conn.execute(
        "SELECT b.slot, b.member_id, b.rid FROM beacon_ids b JOIN members m ON m.member_id = b.member_id"
        " WHERE b.slot BETWEEN ? AND ? AND m.erased = 0",
        (first, last),
    ):
        tables.setdefault(int(slot), {})[member_id] = bytes(rid)
    return tables


def prune_ids(conn: sqlite3.Connection, now: float, window_s: int = WINDOW_S) -> int:
    """Identifiers of windows long past, and every identifier of an erased member; inside a transaction."""
    old = conn.execute("DELETE FROM beacon_ids WHERE slot < ?", (window_of(now, window_s) - 2,)).rowcount
    erased = conn.execute(
        "DELETE FROM beacon_ids WHERE member_id IN (SELECT member_id FROM members WHERE erased = 1)"
    ).rowcount
    return int(old) + int(erased)
