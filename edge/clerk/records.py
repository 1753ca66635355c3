"""Writes the clerk terminal makes besides sales: the personal-data audit and pickup reservations.

Each row and the event that tells HQ about it commit in one transaction (docs/design.md §2, rule 1),
so an opened profile is never unaudited at HQ and a reservation is never lost between store and HQ.
"""

from __future__ import annotations

import time

import sqlite_utils

from tenpo.edge.audit_chain import chain_fields
from tenpo.edge.db import transaction
from tenpo.edge.membership import sealing
from tenpo.edge.outbox import append, next_counter
from tenpo.edge.reservations.store import hold_here
from tenpo.shared.errors import UserError
from tenpo.shared.events import MemberViewed, ReservationRequested
from tenpo.shared.ids import is_store_id

AUDIT_ACTIONS = ("view", "export")


def record_member_access(db: sqlite_utils.Database, clerk_id: str, member_id: str, action: str = "view",
                         now: float | None = None) -> int:  # fmt: skip
    """Audit one view or export of a member's personal data; returns the member.viewed event's seq."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"action {action!r}: expected one of {AUDIT_ACTIONS}")
    at = time.time() if now is None else now
    with transaction(db) as conn:
        seq = append(conn, MemberViewed(clerk_id=clerk_id, member_id=member_id, action=action, at=at))  # type: ignore[arg-type]
        # issue 14: each row chained to the one before (edge/audit_chain.py), under this transaction's write lock
        link = chain_fields(conn, (clerk_id, member_id, action, at, seq))
        conn.execute("INSERT INTO member_audit(clerk_id, member_id, action, at, event_seq, chain_seq, prev_hash, row_hash)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (clerk_id, member_id, action, at, seq, link.seq, link.prev_hash, link.row_hash))  # fmt: skip
    return seq


def member_audit(db: sqlite_utils.Database, member_id: str | None = None, limit: int = 50) -> list[dict[str, object]]:
    """Views and exports, newest first; for a member, also those under ids HQ merged into it (audit rows
    keep the id they were written with: the log is append-only)."""
    where, params = ("", ())
    if member_id:
        merged = [r[0] for r in db.conn.execute(
            "SELECT loser FROM member_merges WHERE winner = ? AND undone = 0", (member_id,)).fetchall()]  # fmt: skip
        ids = [member_id, *merged]
        where, params = (f"WHERE member_id IN ({', '.join('?' * len(ids))})", tuple(ids))
    rows = db.conn.execute(
        f"SELECT clerk_id, member_id, action, at, event_seq FROM member_audit {where} ORDER BY id DESC LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [dict(zip(("clerk_id", "member_id", "action", "at", "event_seq"), row)) for row in rows]


def request_reservation(db: sqlite_utils.Database, store_id: str, clerk_id: str, *, sku: str, qty: int,
                        from_store: str, member_id: str | None = None, customer: str | None = None,
                        pickup_store: str | None = None) -> str:  # fmt: skip
    """取り置き: ask HQ to have ``from_store`` hold ``qty`` of ``sku`` for pickup at ``pickup_store`` (default:
    here; another store than ``from_store`` gets it by transfer, docs/transfers.md). Held here at once when
    ``from_store`` is this store and available covers it; returns the id."""
    pickup_store = (pickup_store or "").strip() or store_id
    if qty < 1:
        raise UserError("qty: at least 1")
    if not is_store_id(pickup_store):
        raise UserError(f"pickup store: {pickup_store[:40]!r} is not a store id")
    if not member_id and not (customer and customer.strip()):
        raise UserError("customer: a member or a name/phone to hold it for")
    now = time.time()
    with transaction(db) as conn:
        if not conn.execute("SELECT 1 FROM products WHERE sku = ?", (sku,)).fetchone():
            raise UserError(f"sku: {sku} is not in the product list")
        reservation_id = f"{store_id}-P{next_counter(conn, 'reservation'):06d}"
        seq = append(conn, ReservationRequested(
            reservation_id=reservation_id, sku=sku, qty=qty, from_store=from_store, pickup_store=pickup_store,
            member_id=member_id, customer=customer, clerk_id=clerk_id, at=now))  # fmt: skip
        conn.execute(
            "INSERT INTO pickup_reservations(reservation_id, sku, qty, from_store, member_id, customer, clerk_id,"
            " event_seq, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (reservation_id, sku, qty, from_store, member_id,
             sealing.seal_customer(conn, reservation_id, customer),  # personal data, sealed at rest (issue 14)
             clerk_id, seq, now),
        )
        if from_store == store_id:  # 取り置き of this store's own stock: held here at once (issue 18)
            hold_here(conn, reservation_id, sku=sku, qty=qty, member_id=member_id, customer=customer,
                      clerk_id=clerk_id, store_id=store_id, pickup_store=pickup_store)  # fmt: skip
            conn.execute("UPDATE pickup_reservations SET status = 'confirmed' WHERE reservation_id = ?",
                         (reservation_id,))  # fmt: skip
    return reservation_id
