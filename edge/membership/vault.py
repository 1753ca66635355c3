"""Members' personal data in the replica, sealed: the adapter between SQLite rows and tenpo.shared.pii.

Columns ``name, kana, phone, email, card_no, line_user_id`` hold AES-256-GCM values bound to
("members", column, member_id); ``personal`` holds the personal keys of ``custom`` (birth date,
address, ...) as one sealed JSON object. Exact lookups go through the blind-index columns
``phone_idx, phone4_idx, email_idx, card_idx, line_idx``; name/reading search through
``member_tokens`` (token, rank, member_id), read in index order and stopped at the limit.
The design and what each index leaks: docs/encryption.md.
"""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tenpo.edge import keystore
from tenpo.shared import cleansing, pii

TABLE = "members"
TEXT_COLUMNS = ("name", "kana", "phone", "email", "card_no", "line_user_id")
SEALED_COLUMNS = (*TEXT_COLUMNS, "personal")
INDEX_COLUMNS = ("phone_idx", "phone4_idx", "email_idx", "card_idx", "line_idx")
# Keys of a member's `custom` JSON that are personal data: sealed in `personal`, never left in `custom`.
PERSONAL_KEYS = frozenset({"birth_date", "birthday", "address", "address1", "address2", "postal_code", "zip",
                           "prefecture", "city", "gender", "tel", "mobile", "line_id"})  # fmt: skip
SCAN_FACTOR = 20  # a name query reads at most limit x this many token rows looking for real matches
# Issue 19: members whose tokens were written here while a bootstrap's tokens wait in edge/bootstrap_bulk.py's
# staging table; their staged (older) tokens are not moved. The table exists only while the staging one does.
TOKENS_REWRITTEN = "member_tokens_rewritten"


@dataclass(frozen=True, slots=True)
class Personal:
    """A member's personal fields in the clear (only ever in memory)."""

    name: str | None = None
    kana: str | None = None
    phone: str | None = None
    email: str | None = None
    card_no: str | None = None
    line_user_id: str | None = None
    personal: dict[str, Any] | None = None


def split_custom(custom: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what stays in `custom` in the clear, the personal part that is sealed)."""
    plain: dict[str, Any] = {}
    personal: dict[str, Any] = {}
    for key, value in (custom or {}).items():
        (personal if key in PERSONAL_KEYS else plain)[key] = value
    return plain, personal


def sealed_columns(codec: pii.Codec, member_id: str, person: Personal) -> dict[str, bytes | None]:
    """Column -> stored value for the sealed columns and their blind indexes."""
    return dict(zip(STORED_COLUMNS, sealed_rows(codec, [member_id], [person])[0], strict=True))


STORED_COLUMNS = (*SEALED_COLUMNS, *INDEX_COLUMNS)  # the order of ``sealed_rows``' values


def sealed_rows(codec: pii.Codec, member_ids: Sequence[str], people: Sequence[Personal]) -> list[tuple[bytes | None, ...]]:
    """Many members' STORED_COLUMNS at once (a bootstrap chunk): each column sealed in one batch."""
    columns = [
        codec.seal_many([getattr(person, column) for person in people], TABLE, column, member_ids)
        for column in TEXT_COLUMNS
    ]
    columns.append(codec.seal_many(
        [json.dumps(person.personal, ensure_ascii=False) if person.personal else None for person in people],
        TABLE, "personal", member_ids,
    ))  # fmt: skip
    columns.append([codec.phone_index(person.phone) for person in people])
    columns.append([codec.phone_last4_index(person.phone) for person in people])
    columns.append([codec.email_index(person.email) for person in people])
    columns.append([codec.card_index(person.card_no) for person in people])
    columns.append([codec.line_index(person.line_user_id) for person in people])
    return list(zip(*columns, strict=True)) if people else []


def open_value(codec: pii.Codec, value: Any, column: str, member_id: str) -> str | None:
    """A stored value in the clear; text (a row written before migration 9 by a tool) is returned as it is."""
    if value is None or isinstance(value, str):
        return value
    return codec.open(bytes(value), TABLE, column, member_id)


def open_person(codec: pii.Codec, member_id: str, row: Mapping[str, Any]) -> Personal:
    """Decrypt the sealed columns present in ``row`` (a mapping column -> stored value)."""
    values: dict[str, Any] = {c: open_value(codec, row.get(c), c, member_id) for c in TEXT_COLUMNS if c in row}
    personal = open_value(codec, row.get("personal"), "personal", member_id)
    return Personal(**values, personal=json.loads(personal) if personal else None)


def read_person(conn: sqlite3.Connection, codec: pii.Codec, member_id: str) -> Personal | None:
    row = conn.execute(
        f"SELECT {', '.join(SEALED_COLUMNS)} FROM members WHERE member_id = ?", (member_id,)
    ).fetchone()
    return open_person(codec, member_id, dict(zip(SEALED_COLUMNS, row))) if row else None


# ---------------------------------------------------------------------------- writes


def write_person(conn: sqlite3.Connection, codec: pii.Codec, member_id: str, person: Personal,
                 old: Personal | None = None) -> None:  # fmt: skip
    """Seal ``person`` into an existing members row and move its search tokens (``old``: what it held)."""
    values = sealed_columns(codec, member_id, person)
    conn.execute(
        f"UPDATE members SET {', '.join(f'{c} = ?' for c in values)} WHERE member_id = ?",
        (*values.values(), member_id),
    )
    if old is not None:
        drop_tokens(conn, codec, member_id, old)
    add_tokens(conn, codec, member_id, person)
    tokens_rewritten(conn, member_id)


def tokens_rewritten(conn: sqlite3.Connection, member_id: str) -> None:
    """The member's tokens are what this connection wrote, not what a bootstrap staged for it (issue 19)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TOKENS_REWRITTEN,)).fetchone():
        conn.execute(f"INSERT OR IGNORE INTO {TOKENS_REWRITTEN}(member_id) VALUES (?)", (member_id,))


def add_tokens(conn: sqlite3.Connection, codec: pii.Codec, member_id: str, person: Personal) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO member_tokens(token, rank, member_id) VALUES (?, ?, ?)",
        [(token, rank, member_id) for token, rank in codec.name_tokens(person.name, person.kana).items()],
    )


def drop_tokens(conn: sqlite3.Connection, codec: pii.Codec, member_id: str, person: Personal) -> None:
    conn.executemany(
        "DELETE FROM member_tokens WHERE token = ? AND rank = ? AND member_id = ?",
        [(token, rank, member_id) for token, rank in codec.name_tokens(person.name, person.kana).items()],
    )


def erase(conn: sqlite3.Connection, member_id: str) -> None:
    """Forget a member's personal data and search tokens (the row stays, marked erased, for the ledgers)."""
    codec = keystore.codec(conn)
    old = _old_person(conn, codec, member_id)
    if old is not None:
        drop_tokens(conn, codec, member_id, old)
    tokens_rewritten(conn, member_id)
    conn.execute(
        f"UPDATE members SET {', '.join(f'{c} = NULL' for c in (*SEALED_COLUMNS, *INDEX_COLUMNS))} WHERE member_id = ?",
        (member_id,),
    )


def copy_to(conn: sqlite3.Connection, loser: str, winner: str) -> None:
    """A merge: seal the loser's personal data again for the winner's id (values are bound to their row)."""
    codec = keystore.codec(conn)
    person = _old_person(conn, codec, loser)
    if person is not None:
        write_person(conn, codec, winner, person)


def forget_tokens(conn: sqlite3.Connection, member_id: str) -> None:
    """Before a member row is deleted (the loser of a merge)."""
    codec = keystore.codec(conn)
    old = _old_person(conn, codec, member_id)
    if old is not None:
        drop_tokens(conn, codec, member_id, old)
    tokens_rewritten(conn, member_id)


def _old_person(conn: sqlite3.Connection, codec: pii.Codec, member_id: str) -> Personal | None:
    try:
        return read_person(conn, codec, member_id)
    except pii.PiiError:
        return None  # a damaged value: its tokens can only be rebuilt (`tenpo edge keys rotate --data`)


# ---------------------------------------------------------------------------- lookups


def exact_ids(conn: sqlite3.Connection, codec: pii.Codec, query: str, limit: int) -> list[str]:
    """Members by card, e-mail, phone (any common format) or a phone's last four digits."""
    clauses: list[tuple[str, bytes]] = []
    if (card := codec.card_index(query)) is not None:
        clauses.append(("card_idx", card))
    if "@" in query:
        try:
            clauses.append(("email_idx", codec.blind("email", cleansing.normalize_email(query).casefold())))
        except cleansing.CleansingError:
            pass
    digits = unicodedata.normalize("NFKC", query)
    if len(digits) == 4 and digits.isascii() and digits.isdigit():
        clauses.append(("phone4_idx", codec.blind("phone4", digits)))
    if sum(ch.isdigit() for ch in query) >= 6:
        try:
            clauses.append(("phone_idx", codec.blind("phone", cleansing.normalize_phone(query))))
        except cleansing.CleansingError:
            pass
    found: list[str] = []
    for column, value in clauses:
        for (member_id,) in conn.execute(
            f"SELECT member_id FROM members WHERE {column} = ? AND erased = 0 ORDER BY member_id LIMIT ?",
            (value, limit),
        ):
            if member_id not in found:
                found.append(member_id)
    return found[:limit]


def name_ids(conn: sqlite3.Connection, codec: pii.Codec, query: str, limit: int,
             exclude: Iterable[str] = ()) -> list[str]:  # fmt: skip
    """Members whose name or reading (or a later word of it) starts with ``query``: token rows in
    (rank, member_id) order, each checked against the decrypted name, stopped at ``limit``."""
    looked = codec.query_token(query)
    if looked is None or limit <= 0:
        return []
    token, key = looked
    skip = set(exclude)
    if len(key) <= pii.PREFIX_MAX:
        # The token is the query itself (a false hit needs a 64-bit HMAC collision): the index answers alone,
        # and only the members shown are decrypted.
        rows = conn.execute(
            "SELECT t.member_id FROM member_tokens t JOIN members m ON m.member_id = t.member_id"
            " WHERE t.token = ? AND m.erased = 0 ORDER BY t.rank, t.member_id LIMIT ?",
            (token, limit + len(skip)),
        ).fetchall()
        return [member_id for (member_id,) in rows if member_id not in skip][:limit]
    found: list[str] = []
    after: tuple[int, str] = (-1, "")
    budget = max(limit * SCAN_FACTOR, 200)
    page = min(max(limit * 2, 16), budget)
    while budget > 0 and len(found) < limit:
        rows = conn.execute(
            "SELECT t.rank, t.member_id, m.name, m.kana, m.erased FROM member_tokens t"
            " JOIN members m ON m.member_id = t.member_id"
            " WHERE t.token = ? AND (t.rank, t.member_id) > (?, ?) ORDER BY t.rank, t.member_id LIMIT ?",
            (token, *after, page),
        ).fetchall()
        if not rows:
            break
        budget -= len(rows)
        for rank, member_id, name, kana, erased in rows:
            after = (rank, member_id)
            if erased or member_id in skip or member_id in found:
                continue
            try:
                plain = (open_value(codec, name, "name", member_id), open_value(codec, kana, "kana", member_id))
            except pii.PiiError:
                continue
            if pii.matches(key, *plain):
                found.append(member_id)
                if len(found) == limit:
                    break
    return found


def count_name_matches(conn: sqlite3.Connection, codec: pii.Codec, query: str) -> int:
    """About how many members a name query matches (the token's rows: an upper bound)."""
    looked = codec.query_token(query)
    if looked is None:
        return 0
    # An erased member's tokens are deleted with its data, so the token's rows are enough.
    (count,) = conn.execute("SELECT count(*) FROM member_tokens WHERE token = ?", (looked[0],)).fetchone()
    return int(count)
