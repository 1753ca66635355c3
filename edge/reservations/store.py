"""Reservations at the holding store: decided when HQ's request arrives, moved by the clerk, consumed by
the sale that hands the item over. Every state change and its event commit in one transaction.

``available = on_hand - reserved``: on hand is this store's ledger, reserved the confirmed and ready
reservations. The agent confirms a request when available covers it and rejects it otherwise, inside
the transaction that applies the feed page (so a request is decided exactly once, even after a crash).

Collected at another store (docs/transfers.md): the clerk here ships it (:func:`ship`: the reservation goes
``in_transit`` and a transfer takes the units out, one transaction); the pickup store keeps an ``in_transit``
row from HQ's change and holds the units when its dock accepts that transfer (:func:`arrived`, inside the
inspection's transaction).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

import sqlite_utils

from tenpo.edge import keystore, transfers
from tenpo.edge.db import transaction
from tenpo.edge.outbox import append
from tenpo.edge.reservations.levels import HOLDING as HOLDING  # re-exported: this area's one vocabulary
from tenpo.edge.reservations.levels import available as available
from tenpo.edge.reservations.levels import on_hand as on_hand
from tenpo.edge.reservations.levels import reserved as reserved
from tenpo.edge.reservations.levels import reserved_by_sku as reserved_by_sku
from tenpo.shared.changes import ReservationUpsert
from tenpo.shared.errors import UserError
from tenpo.shared.events import (
    ReservationArrived,
    ReservationConfirmed,
    ReservationPickedUp,
    ReservationReady,
    ReservationRejected,
    ReservationShipped,
)

RELEASED_BY_HQ = ("cancelled", "expired")
IN_TRANSIT = "in_transit"  # holds nothing: sent from here, or on its way to be collected here


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: str
    sku: str
    qty: int
    channel: str
    member_id: str | None
    customer: str | None
    pickup_store: str | None
    state: str
    reason: str | None
    receipt_no: str | None
    expires_at: float | None
    created_at: float
    updated_at: float
    transfer_id: str | None = None  # collected at another store: the transfer that carries it
    shipped_from: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def transit(self, here: str) -> str | None:
        """Where it stands between two stores, from this store's side; None for a plain hold."""
        if self.state == IN_TRANSIT:
            return f"sent to {self.pickup_store}" if self.shipped_from == here else f"coming from {self.shipped_from}"
        if self.pickup_store and self.pickup_store != here and self.state in HOLDING:
            return f"to send to {self.pickup_store}"
        if self.transfer_id and self.shipped_from != here:
            return f"came from {self.shipped_from}"
        return None


_COLUMNS = ", ".join(Reservation.__dataclass_fields__)


# ---------------------------------------------------------------------------- HQ's changes


def apply_upsert(conn: sqlite3.Connection, store_id: str, change: ReservationUpsert, version: int | None) -> None:
    """One ``reservation.upsert`` inside the feed transaction: decide a new request, or take HQ's release."""
    version = version or change.version
    if change.store_id == store_id:
        _holding(conn, change, version)
    elif change.pickup_store == store_id:
        _awaiting(conn, change, version)
    # A 取り置き this store's clerk asked for (no row otherwise): the clerk's list shows HQ's word.
    conn.execute("UPDATE pickup_reservations SET status = ? WHERE reservation_id = ?",
                 (change.state, change.reservation_id))  # fmt: skip


def _holding(conn: sqlite3.Connection, change: ReservationUpsert, version: int) -> None:
    now = time.time()
    found = conn.execute("SELECT state, version FROM reservations WHERE reservation_id = ?",
                         (change.reservation_id,)).fetchone()  # fmt: skip
    if found is None:
        state, reason = change.state, change.reason
        if change.state == "requested":
            free = available(conn, change.sku)
            if free >= change.qty:
                state, reason = "confirmed", None
                append(conn, ReservationConfirmed(reservation_id=change.reservation_id, sku=change.sku,
                                                  qty=change.qty, at=now))  # fmt: skip
            else:
                state, reason = "rejected", f"not_available: {max(free, 0)} available here"
                append(conn, ReservationRejected(reservation_id=change.reservation_id, sku=change.sku,
                                                 qty=change.qty, reason=reason, at=now))  # fmt: skip
        _insert(conn, change.reservation_id, change.sku, change.qty, change.channel, change.member_id,
                change.customer, change.pickup_store, state, reason, change.expires_at, version, now)
        return
    _follow(conn, change, version, found)


def _awaiting(conn: sqlite3.Connection, change: ReservationUpsert, version: int) -> None:
    """Collected here, held elsewhere: a row once it is on its way (nothing held here until the dock accepts the
    transfer); HQ's cancel or expiry releases it, also after it arrived and before HQ heard."""
    found = conn.execute("SELECT state, version FROM reservations WHERE reservation_id = ?",
                         (change.reservation_id,)).fetchone()  # fmt: skip
    if found is None:
        if change.state == IN_TRANSIT:
            _insert(conn, change.reservation_id, change.sku, change.qty, change.channel, change.member_id,
                    change.customer, change.pickup_store, IN_TRANSIT, change.reason, change.expires_at, version,
                    time.time(), change.transfer_id, change.shipped_from or change.store_id)  # fmt: skip
        return
    _follow(conn, change, version, found)


def _follow(conn: sqlite3.Connection, change: ReservationUpsert, version: int, found: tuple[Any, ...]) -> None:
    """HQ's later word on a row this store has: a release, or the newer version and deadline."""
    now = time.time()
    local_state, local_version = found
    if int(local_version) >= version:
        return  # a replayed page
    if change.state in RELEASED_BY_HQ and local_state != "picked_up":
        conn.execute("UPDATE reservations SET state = ?, reason = ?, version = ?, updated_at = ? WHERE reservation_id = ?",
                     (change.state, change.reason, version, now, change.reservation_id))  # fmt: skip
    else:
        conn.execute("UPDATE reservations SET version = ?, expires_at = coalesce(?, expires_at) WHERE reservation_id = ?",
                     (version, change.expires_at, change.reservation_id))  # fmt: skip


def _insert(conn: sqlite3.Connection, reservation_id: str, sku: str, qty: int, channel: str, member_id: str | None,
            customer: str | None, pickup_store: str | None, state: str, reason: str | None, expires_at: float | None,
            version: int, now: float, transfer_id: str | None = None, shipped_from: str | None = None) -> None:  # fmt: skip
    conn.execute(
        f"INSERT INTO reservations({_COLUMNS}, version) VALUES ({', '.join('?' * 16)})",
        (reservation_id, sku, qty, channel, member_id, _seal(conn, reservation_id, customer), pickup_store, state,
         reason, None, expires_at, now, now, transfer_id, shipped_from, version),
    )  # fmt: skip


# The customer's name or phone is personal data: sealed at rest like the members' (docs/encryption.md).
def _seal(conn: sqlite3.Connection, reservation_id: str, customer: str | None) -> bytes | None:
    return None if not customer else keystore.codec(conn).seal(customer, "reservations", "customer", reservation_id)


def _opened(conn: sqlite3.Connection, row: tuple[Any, ...]) -> Reservation:
    found = Reservation(*row)
    stored: Any = found.customer
    if stored is None or isinstance(stored, str):
        return found
    customer = keystore.codec(conn).open(bytes(stored), "reservations", "customer", found.reservation_id)
    return replace(found, customer=customer)


# ---------------------------------------------------------------------------- the clerk


def get(conn: sqlite3.Connection, reservation_id: str) -> Reservation | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM reservations WHERE reservation_id = ?", (reservation_id,)).fetchone()
    return None if row is None else _opened(conn, row)


def listing(db: sqlite_utils.Database, active_only: bool = False, limit: int = 200,
            here: str | None = None) -> list[Reservation]:  # fmt: skip
    """Newest first. ``active_only``: what the counter still has to do, including what is on its way to be
    collected ``here`` (what this store sent away is done here)."""
    where, params = "", tuple[str, ...]()
    if active_only:
        where = "WHERE state IN ('requested', 'confirmed', 'ready') OR (state = 'in_transit' AND pickup_store = ?)"
        params = (here or "",)
    rows = db.conn.execute(f"SELECT {_COLUMNS} FROM reservations {where} ORDER BY created_at DESC LIMIT ?",
                           (*params, limit))  # fmt: skip
    return [_opened(db.conn, row) for row in rows]


def hold_here(conn: sqlite3.Connection, reservation_id: str, *, sku: str, qty: int, member_id: str | None,
              customer: str | None, clerk_id: str, store_id: str, pickup_store: str | None = None) -> None:  # fmt: skip
    """The clerk's 取り置き of this store's own stock, inside the request's transaction: held at once if
    available covers it (``reservation.confirmed`` after the ``reservation.requested`` HQ records), else
    UserError and nothing is written. ``pickup_store``: collected at another store, which this one ships to."""
    free = available(conn, sku)
    if free < qty:
        raise UserError(f"qty: only {max(free, 0)} of {sku} available here (on hand minus reservations)")
    now = time.time()
    _insert(conn, reservation_id, sku, qty, f"store:{store_id}", member_id, customer, pickup_store or store_id,
            "confirmed", None, None, 0, now)  # fmt: skip
    append(conn, ReservationConfirmed(reservation_id=reservation_id, sku=sku, qty=qty, clerk_id=clerk_id, at=now))


def ship(db: sqlite_utils.Database, store_id: str, reservation_id: str, clerk_id: str | None = None,
         epcs: list[str] | None = None) -> tuple[Reservation, transfers.Transfer]:  # fmt: skip
    """Collected at another store: send the held units there. One transaction: the reservation goes
    ``in_transit`` (``reservation.shipped``, first, so the pickup store hears of it before the ASN) and a
    transfer takes the units out (``stock.moved`` transfer-out, ``transfer.shipped``: HQ's ASN for the pickup
    store's dock). ``epcs``: the tags packed, checked there tag by tag."""
    with transaction(db) as conn:
        found = _require(conn, reservation_id, HOLDING, "ship")
        if not found.pickup_store or found.pickup_store == store_id:
            raise UserError(f"reservation {reservation_id} is collected here: nothing to send")
        if epcs and len(epcs) != found.qty:
            raise UserError(f"reservation {reservation_id} holds {found.qty}; the EPC file lists {len(epcs)} tags")
        now = time.time()
        transfer_id = transfers.new_transfer_id(store_id, now)
        append(conn, ReservationShipped(reservation_id=reservation_id, sku=found.sku, qty=found.qty, clerk_id=clerk_id,
                                        transfer_id=transfer_id, to_store=found.pickup_store, at=now))  # fmt: skip
        conn.execute("UPDATE reservations SET state = ?, transfer_id = ?, shipped_from = ?, updated_at = ?"
                     " WHERE reservation_id = ? AND state = ?",
                     (IN_TRANSIT, transfer_id, store_id, now, reservation_id, found.state))  # fmt: skip
        sent = transfers.send(conn, transfer_id, to_store=found.pickup_store, sku=found.sku, count=found.qty,
                              epcs=epcs or [], clerk_id=clerk_id, at=now)  # fmt: skip
        result = get(conn, reservation_id)
    assert result is not None
    return result, sent


def arrived(conn: sqlite3.Connection, store_id: str, shipment_id: str, received: dict[str, int]) -> list[Reservation]:
    """Inside the transaction of an accepted dock inspection that posted ``received`` (sku -> units) for
    ``shipment_id``: each reservation coming here by that transfer is held here now, as far as the units go
    (``ready``; fewer than reserved: held with the reason, none: rejected). Returns them as they are now."""
    rows = conn.execute("SELECT reservation_id FROM reservations WHERE transfer_id = ? AND state = ? AND pickup_store = ?"
                        " AND coalesce(shipped_from, '') <> ? ORDER BY created_at", (shipment_id, IN_TRANSIT, store_id,
                                                                                     store_id)).fetchall()  # fmt: skip
    left = dict(received)
    done: list[Reservation] = []
    now = time.time()
    for (reservation_id,) in rows:
        found = get(conn, reservation_id)
        assert found is not None
        held = max(0, min(found.qty, left.get(found.sku, 0)))
        left[found.sku] = left.get(found.sku, 0) - held
        reason = None if held == found.qty else f"short_arrival: {held} of {found.qty} arrived at {store_id}"
        conn.execute("UPDATE reservations SET state = ?, qty = ?, reason = ?, updated_at = ? WHERE reservation_id = ?",
                     ("ready" if held else "rejected", held or found.qty, reason, now, reservation_id))  # fmt: skip
        append(conn, ReservationArrived(reservation_id=reservation_id, sku=found.sku, qty=found.qty,
                                        transfer_id=shipment_id, held=held, reason=reason, at=now))  # fmt: skip
        conn.execute("UPDATE pickup_reservations SET status = ? WHERE reservation_id = ?",
                     ("ready" if held else "rejected", reservation_id))  # fmt: skip
        result = get(conn, reservation_id)
        assert result is not None
        done.append(result)
    return done


def _require(conn: sqlite3.Connection, reservation_id: str, states: tuple[str, ...], action: str) -> Reservation:
    found = get(conn, reservation_id)
    if found is None:
        raise UserError(f"reservation {reservation_id}: not held at this store")
    if found.state not in states:
        raise UserError(f"reservation {reservation_id} is {found.state}: cannot {action} it")
    return found


def mark_ready(db: sqlite_utils.Database, reservation_id: str, clerk_id: str | None = None) -> Reservation:
    """Picked from the shelf, waiting at the counter."""
    with transaction(db) as conn:
        found = _require(conn, reservation_id, ("confirmed",), "mark ready")
        _set(conn, found, "ready")
        append(conn, ReservationReady(reservation_id=found.reservation_id, sku=found.sku, qty=found.qty,
                                      clerk_id=clerk_id, at=time.time()))  # fmt: skip
        result = get(conn, reservation_id)
    assert result is not None
    return result


def reject(db: sqlite_utils.Database, reservation_id: str, reason: str, clerk_id: str | None = None) -> Reservation:
    """The clerk cannot hold it (damaged, miscounted ...): the units are free again and HQ tells the channel."""
    if not reason.strip():
        raise UserError("reason: say why the reservation is rejected")
    with transaction(db) as conn:
        found = _require(conn, reservation_id, ("confirmed", "ready"), "reject")
        _set(conn, found, "rejected", reason=reason.strip())
        append(conn, ReservationRejected(reservation_id=found.reservation_id, sku=found.sku, qty=found.qty,
                                         clerk_id=clerk_id, reason=reason.strip()[:1024], at=time.time()))  # fmt: skip
        result = get(conn, reservation_id)
    assert result is not None
    return result


def consume(conn: sqlite3.Connection, reservation_id: str, receipt_no: str, sold: Iterable[tuple[str, int]],
            clerk_id: str | None = None) -> None:  # fmt: skip
    """Inside a sale's transaction: the sale hands the reservation over (``sold``: its (sku, qty) lines).
    Raises UserError (the sale rolls back) if the reservation is not held here or the sale lacks its items."""
    found = _require(conn, reservation_id, HOLDING, "hand over")
    quantity = sum(qty for sku, qty in sold if sku == found.sku)
    if quantity < found.qty:
        raise UserError(f"reservation {reservation_id}: the sale has {quantity} of {found.sku}, the reservation {found.qty}")
    _set(conn, found, "picked_up", receipt_no=receipt_no)
    append(conn, ReservationPickedUp(reservation_id=found.reservation_id, sku=found.sku, qty=found.qty,
                                     clerk_id=clerk_id, receipt_no=receipt_no, at=time.time()))  # fmt: skip


def _set(conn: sqlite3.Connection, found: Reservation, state: str, reason: str | None = None,
         receipt_no: str | None = None) -> None:  # fmt: skip
    conn.execute(
        "UPDATE reservations SET state = ?, reason = coalesce(?, reason), receipt_no = coalesce(?, receipt_no),"
        " updated_at = ? WHERE reservation_id = ? AND state = ?",
        (state, reason, receipt_no, time.time(), found.reservation_id, found.state),
    )
