"""Business writes and reads on the store replica.

Each write function runs one transaction holding the business rows and the outbox event that
reports them. Reads never need the agent: the clerk terminal and the CLI call them directly.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from tenpo.edge import keystore
from tenpo.edge.db import transaction
from tenpo.edge.ledgers import post_stock
from tenpo.edge.membership import vault
from tenpo.edge.membership.rules import registration_problems
from tenpo.edge.outbox import append, read_counter
from tenpo.shared import cleansing, pii
from tenpo.shared.errors import UserError
from tenpo.shared.events import MemberRegistered
from tenpo.shared.field_bounds import MAX_FIELD_CHARS  # issue 14

log = logging.getLogger(__name__)

MEMBER_COLUMNS = (
    "member_id", "name", "kana", "phone", "email", "card_no", "line_user_id", "personal", "consent", "custom",
    "home_store", "provisional", "erased", "points_hq", "points_through", "version",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    name: str | None
    kana: str | None
    phone: str | None
    email: str | None
    card_no: str | None
    line_user_id: str | None
    consent: dict[str, bool]
    custom: dict[str, Any]
    home_store: str | None
    provisional: bool
    points: int  # HQ's balance plus our own entries HQ has not seen yet

    def as_json(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.__slots__}


def new_member_id(store_id: str) -> str:
    """Provisional id: store prefix plus a time-ordered random part; HQ may later map it to a golden id."""
    return f"{store_id}-{int(time.time() * 1000):011x}{os.urandom(3).hex()}"


# ---------------------------------------------------------------------------- members


def register_member(
    db: sqlite_utils.Database,
    store_id: str,
    *,
    name: str,
    kana: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    card_no: str | None = None,
    line_user_id: str | None = None,
    consent: dict[str, bool] | None = None,
    custom: dict[str, Any] | None = None,
) -> str:
    """Register a member offline under a provisional id; reports every bad field at once."""
    errors: list[str] = []
    # issue 14: an over-long value is refused by its length, before cleansing echoes it back.
    given = {"name": name, "kana": kana, "phone": phone, "email": email, "card_no": card_no, "line_user_id": line_user_id}
    for label, value in given.items():
        if value is not None and len(value) > MAX_FIELD_CHARS:
            errors.append(f"{label}: {len(value)} characters, at most {MAX_FIELD_CHARS}")
    if errors:
        raise UserError("; ".join(errors))

    def clean(fn: Callable[[str], str], value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            return fn(value)
        except cleansing.CleansingError as exc:
            errors.append(str(exc))
            return None

    clean_name = clean(cleansing.normalize_name, name)
    if not clean_name and not errors:
        errors.append("name: required")
    clean_kana = clean(cleansing.normalize_kana, kana)
    clean_phone = clean(cleansing.normalize_phone, phone)
    clean_email = clean(cleansing.normalize_email, email)
    clean_card = card_no.strip() if card_no and card_no.strip() else None
    # The chain's rules from HQ (required fields, mobile-only phone), the last received: offline too.
    raw = {"name": name, "kana": kana, "phone": phone, "email": email, "card_no": card_no}
    said = {error.partition(":")[0] for error in errors}
    errors += [p for p in registration_problems(db.conn, raw) if p.partition(":")[0] not in said]
    if errors:
        raise UserError("; ".join(errors))
    member_id = new_member_id(store_id)
    now = time.time()
    record = MemberRegistered(
        member_id=member_id, name=clean_name, kana=clean_kana, phone=clean_phone, email=clean_email,
        card_no=clean_card, line_user_id=line_user_id or None, consent=consent or {}, custom=custom or {},
        home_store=store_id,
    )
    plain_custom, personal = vault.split_custom(record.custom)
    with transaction(db) as conn:
        codec = keystore.codec(conn)
        if clean_card and conn.execute(
            "SELECT 1 FROM members WHERE card_idx = ? AND erased = 0", (codec.card_index(clean_card),)
        ).fetchone():
            raise UserError(f"card: {clean_card} already belongs to another member")
        conn.execute(
            "INSERT INTO members(member_id, consent, custom, home_store, provisional, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 1, ?, ?)",
            (member_id, json.dumps(record.consent), json.dumps(plain_custom, ensure_ascii=False), store_id, now, now),
        )
        person = vault.Personal(clean_name, clean_kana, clean_phone, clean_email, clean_card, record.line_user_id,
                                personal or None)  # fmt: skip
        vault.write_person(conn, codec, member_id, person)
        append(conn, record)
    return member_id


def find_members(db: sqlite_utils.Database, query: str, limit: int = 20) -> list[Member]:
    """By card number, phone in any common format (or its last four digits), email, or name/kana prefix.

    Exact identifiers go through blind indexes; a name through its search token, read in index order
    and stopped at ``limit`` (docs/encryption.md), so the time does not grow with the number of matches."""
    query = query.strip()
    if not query or limit <= 0:
        return []
    conn = db.conn
    codec = keystore.codec(conn)
    ids = vault.exact_ids(conn, codec, query, limit)
    ids += vault.name_ids(conn, codec, query, limit - len(ids), exclude=ids)
    members = [m for m in (_load_or_skip(conn, codec, member_id) for member_id in ids) if m is not None]
    return sorted(members, key=lambda m: (cleansing.search_key(m.kana or ""), cleansing.search_key(m.name or "")))


def count_members(db: sqlite_utils.Database, query: str) -> int:
    """About how many members find_members would return without a limit (at least as many)."""
    query = query.strip()
    if not query:
        return 0
    codec = keystore.codec(db.conn)
    exact = vault.exact_ids(db.conn, codec, query, 1000)
    return len(exact) + vault.count_name_matches(db.conn, codec, query)


def get_member(db: sqlite_utils.Database, member_id: str) -> Member | None:
    return _load(db.conn, keystore.codec(db.conn), member_id)


def _load(conn: sqlite3.Connection, codec: pii.Codec, member_id: str) -> Member | None:
    row = conn.execute(
        f"SELECT {', '.join(MEMBER_COLUMNS)} FROM members WHERE member_id = ? AND erased = 0", (member_id,)
    ).fetchone()
    return _member(conn, codec, row) if row else None


def _load_or_skip(conn: sqlite3.Connection, codec: pii.Codec, member_id: str) -> Member | None:
    """A search lists the members whose data opens; a tampered row is logged, not fatal to the search
    (opening its profile says what is wrong with it)."""
    try:
        return _load(conn, codec, member_id)
    except pii.PiiError as exc:
        log.warning("member search skipped %s: %s", member_id, exc)
        return None


def _member(conn: sqlite3.Connection, codec: pii.Codec, row: tuple[Any, ...]) -> Member:
    values = dict(zip(MEMBER_COLUMNS, row))
    person = vault.open_person(codec, values["member_id"], values)
    custom = json.loads(values["custom"] or "{}")
    return Member(
        member_id=values["member_id"],
        name=person.name,
        kana=person.kana,
        phone=person.phone,
        email=person.email,
        card_no=person.card_no,
        line_user_id=person.line_user_id,
        consent=json.loads(values["consent"] or "{}"),
        custom={**custom, **(person.personal or {})},
        home_store=values["home_store"],
        provisional=bool(values["provisional"]),
        points=points_balance(conn, values["member_id"], values["points_hq"], values["points_through"]),
    )


def points_balance(conn: sqlite3.Connection, member_id: str, hq_balance: int, through_seq: int) -> int:
    """HQ's balance plus this store's entries HQ had not applied when it sent that balance."""
    (local,) = conn.execute(
        "SELECT coalesce(sum(delta), 0) FROM points_ledger WHERE member_id = ? AND store_seq > ?",
        (member_id, through_seq),
    ).fetchone()
    return int(hq_balance) + int(local)


# ---------------------------------------------------------------------------- stock


@dataclass(frozen=True, slots=True)
class StockRow:
    store_id: str
    sku: str
    name: str
    on_hand: int
    as_of: float | None  # None for this store: the local ledger is live


def adjust_stock(
    db: sqlite_utils.Database, sku: str, qty: int, reason: str, location: str = "floor", ref: str | None = None
) -> int:
    """Append a stock adjustment (positive or negative) and its event; returns the event's seq."""
    if qty == 0:
        raise UserError("qty: must not be zero")
    if not reason or not reason.strip():
        raise UserError("reason: required for a stock adjustment")
    with transaction(db) as conn:
        if not conn.execute("SELECT 1 FROM products WHERE sku = ?", (sku,)).fetchone():
            raise UserError(f"sku: {sku} is not in the product list")
        seq = post_stock(conn, sku=sku, delta=qty, reason=reason.strip(), location=location, ref=ref, adjustment=True)
        assert seq is not None
    return seq


def stock_levels(db: sqlite_utils.Database, store_id: str, sku: str | None = None) -> list[StockRow]:
    """This store's on-hand from its ledger, and every other store's from the replica."""
    conn = db.conn
    where, params = ("WHERE p.sku = ?", (sku,)) if sku else ("", ())
    own = conn.execute(
        f"SELECT p.sku, p.name, coalesce(sum(l.delta), 0) FROM products p "
        f"LEFT JOIN stock_ledger l ON l.sku = p.sku {where} GROUP BY p.sku ORDER BY p.sku",
        params,
    ).fetchall()
    rows = [StockRow(store_id, s, n, int(q), None) for s, n, q in own]
    remote_where, remote_params = ("AND r.sku = ?", (sku,)) if sku else ("", ())
    remote = conn.execute(
        "SELECT r.store_id, r.sku, coalesce(p.name, r.sku), r.on_hand, r.as_of FROM remote_stock r "
        f"LEFT JOIN products p ON p.sku = r.sku WHERE r.store_id != ? {remote_where} ORDER BY r.sku, r.store_id",
        (store_id, *remote_params),
    ).fetchall()
    rows += [StockRow(s, k, n, int(q), a) for s, k, n, q, a in remote]
    return rows


# ---------------------------------------------------------------------------- status


@dataclass(frozen=True, slots=True)
class AgentLink:
    """What the agent last wrote about itself, checked against the process table."""

    running: bool  # the agent process that wrote it is alive
    connected: bool  # ...and it was connected to the broker
    changed_at: float | None


def agent_link(conn: sqlite3.Connection) -> AgentLink:
    row = conn.execute("SELECT value FROM meta WHERE key = 'link'").fetchone()
    link = json.loads(row[0]) if row else {}
    running = _process_alive(link.get("pid"))
    return AgentLink(running, running and bool(link.get("connected")), link.get("at"))


def _process_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True


def sync_status(db: sqlite_utils.Database) -> dict[str, Any]:
    conn = db.conn
    count, oldest = conn.execute("SELECT count(*), min(created_at) FROM outbox").fetchone()
    return {
        "last_seq": read_counter(conn, "outbox"),
        "last_acked_seq": read_counter(conn, "acked"),
        "outbox_pending": int(count),
        "oldest_pending_age_s": round(time.time() - oldest, 3) if oldest else None,
        "downstream_cursor": read_counter(conn, "cursor"),
    }
