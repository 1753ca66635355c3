"""Edge migration 9 (personal data sealed at rest), sealed outbox payloads, and data-key rotation.

Outside the members table, personal data rests in two more places: an outbox event that carries it
(``member.registered``, ``member.updated``, a ``reservation.requested`` for a customer who is not a
member) and a reservation's ``customer``. An event's payload is sealed whole (bound to the event id)
and opened when it is published; the reservation's customer is sealed in its column.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from typing import Any

import sqlite_utils

from tenpo.edge import keystore
from tenpo.shared import pii

from . import vault

SEALED_PREFIX = "sealed:"
VACUUM_META_KEY = "pii.vacuum_pending"
# Payload fields that are personal data: an event with any of them set is sealed in the outbox.
PAYLOAD_FIELDS = ("name", "kana", "phone", "email", "card_no", "line_user_id", "customer", "address", "birth_date")
_NEEDLES = tuple(f'"{field}":' for field in PAYLOAD_FIELDS)
# Other tables' sealed text columns, (table, column, row id column): a data-key rotation seals them again.
# Each value is sealed with associated data (table, column, row id), as the members' are.
SEALED_TEXT_COLUMNS = (
    ("pickup_reservations", "customer", "reservation_id"),  # 取り置き asked by this store (edge migration 6)
    ("reservations", "customer", "reservation_id"),  # holds from the channels (issue 18, edge/reservations)
    ("deliveries", "address", "reservation_id"),  # home deliveries: name, address, phone (edge/deliveries.py)
)


# ---------------------------------------------------------------------------- outbox payloads


def carries_personal_data(payload: str) -> bool:
    if not any(needle in payload for needle in _NEEDLES):
        return False
    try:
        data = json.loads(payload)
    except ValueError:
        return True
    return not isinstance(data, dict) or any(data.get(field) not in (None, "", {}) for field in PAYLOAD_FIELDS)


def seal_payload(conn: sqlite3.Connection, event_id: str, payload: str, codec: pii.Codec | None = None) -> str:
    """The text to store in ``outbox.payload``: sealed when it carries personal data, else as it is."""
    if not carries_personal_data(payload):
        return payload
    sealed = (codec or keystore.codec(conn)).seal(payload, "outbox", "payload", event_id)
    assert sealed is not None
    return SEALED_PREFIX + base64.b64encode(sealed).decode("ascii")


def open_payload(conn: sqlite3.Connection, event_id: str, stored: str, codec: pii.Codec | None = None) -> str:
    """``outbox.payload`` as JSON text again."""
    if not stored.startswith(SEALED_PREFIX):
        return stored
    plain = (codec or keystore.codec(conn)).open(base64.b64decode(stored[len(SEALED_PREFIX):]), "outbox", "payload", event_id)
    assert plain is not None
    return plain


def seal_customer(conn: sqlite3.Connection, reservation_id: str, customer: str | None) -> bytes | None:
    return keystore.codec(conn).seal(customer, "pickup_reservations", "customer", reservation_id)


def open_customer(conn: sqlite3.Connection, reservation_id: str, stored: Any) -> str | None:
    if stored is None or isinstance(stored, str):
        return stored
    return keystore.codec(conn).open(bytes(stored), "pickup_reservations", "customer", reservation_id)


# ---------------------------------------------------------------------------- migration 9


def migrate(db: sqlite_utils.Database) -> bool:
    """Seal every member's personal data, reservation customers and outbox payloads; drop the plaintext
    indexes and search keys. The file is VACUUMed right after (edge/db.py), so no freed page keeps them."""
    conn = db.conn
    codec = keystore.ensure_data_key(conn)
    for column in ("personal", *vault.INDEX_COLUMNS):
        conn.execute(f"ALTER TABLE members ADD COLUMN {column} BLOB")
    conn.execute(
        """CREATE TABLE member_tokens (
            token BLOB NOT NULL,         -- HMAC-SHA256 of a normalised name/reading prefix, 8 bytes
            rank INTEGER NOT NULL,       -- length of the key it came from: the closest names first
            member_id TEXT NOT NULL,
            PRIMARY KEY (token, rank, member_id)) WITHOUT ROWID"""
    )
    _seal_members(conn, codec)
    for index in ("members_card_no", "members_phone", "members_line_user_id", "members_name_key",
                  "members_kana_key", "members_email", "members_phone_last4"):  # fmt: skip
        conn.execute(f"DROP INDEX IF EXISTS {index}")
    conn.execute("ALTER TABLE members DROP COLUMN name_key")
    conn.execute("ALTER TABLE members DROP COLUMN kana_key")
    for column in vault.INDEX_COLUMNS:
        conn.execute(f"CREATE INDEX members_{column} ON members({column}) WHERE {column} IS NOT NULL")
    if _has_table(conn, "pickup_reservations"):
        rows = conn.execute("SELECT reservation_id, customer FROM pickup_reservations WHERE customer IS NOT NULL").fetchall()
        conn.executemany(
            "UPDATE pickup_reservations SET customer = ? WHERE reservation_id = ?",
            [(codec.seal(c, "pickup_reservations", "customer", r), r) for r, c in rows if isinstance(c, str)],
        )
    rows = conn.execute("SELECT id, payload FROM outbox").fetchall()
    conn.executemany("UPDATE outbox SET payload = ? WHERE id = ?",
                     [(seal_payload(conn, eid, text, codec), eid) for eid, text in rows])  # fmt: skip
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, '1')", (VACUUM_META_KEY,))
    return True


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _seal_members(conn: sqlite3.Connection, codec: pii.Codec) -> None:
    rows = conn.execute(
        f"SELECT member_id, {', '.join(vault.TEXT_COLUMNS)}, custom FROM members WHERE erased = 0"
    ).fetchall()
    for member_id, *texts, custom in rows:
        plain_custom, personal = vault.split_custom(_json(custom))
        person = vault.Personal(**dict(zip(vault.TEXT_COLUMNS, texts)), personal=personal or None)
        vault.write_person(conn, codec, member_id, person)
        if personal:
            conn.execute("UPDATE members SET custom = ? WHERE member_id = ?",
                         (json.dumps(plain_custom, ensure_ascii=False), member_id))  # fmt: skip


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def vacuum_if_pending(conn: sqlite3.Connection) -> bool:
    """After migration 9: rewrite the file without free pages and empty the WAL (no old plaintext left).
    Another process holding the file makes it wait for the next open; True when done."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (VACUUM_META_KEY,)).fetchone()
    if row is None:
        return False
    try:
        conn.execute("VACUUM")
        conn.execute("DELETE FROM meta WHERE key = ?", (VACUUM_META_KEY,))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError:
        return False
    return True


# ---------------------------------------------------------------------------- data-key rotation


def reseal_all(conn: sqlite3.Connection, old: pii.Codec, new: pii.Codec) -> dict[str, int]:
    """Open every sealed value with ``old`` and seal it with ``new``; rebuild every blind index and token.
    Runs inside the caller's transaction (with the data key's replacement), so it happens whole or not at all."""
    counts = {"members": 0, "reservations": 0, "outbox": 0}
    conn.execute("DELETE FROM member_tokens")
    rows = conn.execute(f"SELECT member_id, {', '.join(vault.SEALED_COLUMNS)} FROM members WHERE erased = 0").fetchall()
    for member_id, *stored in rows:
        person = vault.open_person(old, member_id, dict(zip(vault.SEALED_COLUMNS, stored)))
        vault.write_person(conn, new, member_id, person)
        counts["members"] += 1
    for table, column, key in SEALED_TEXT_COLUMNS:
        if not _has_table(conn, table):
            continue
        held = conn.execute(f"SELECT {key}, {column} FROM {table} WHERE {column} IS NOT NULL")
        for row_id, stored in held.fetchall():
            plain = stored if isinstance(stored, str) else old.open(bytes(stored), table, column, row_id)
            conn.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (new.seal(plain, table, column, row_id), row_id))
            counts["reservations"] += 1
    for eid, stored in conn.execute("SELECT id, payload FROM outbox").fetchall():
        if stored.startswith(SEALED_PREFIX):
            plain = open_payload(conn, eid, stored, old)
            conn.execute("UPDATE outbox SET payload = ? WHERE id = ?", (seal_payload(conn, eid, plain, new), eid))
            counts["outbox"] += 1
    return counts


def plaintext_left(conn: sqlite3.Connection) -> int:
    """Sealed columns holding text (a row written around the vault): 0 on a sound replica."""
    where = " OR ".join(f"typeof({c}) = 'text'" for c in vault.SEALED_COLUMNS)
    (count,) = conn.execute(f"SELECT count(*) FROM members WHERE {where}").fetchone()
    return int(count)
