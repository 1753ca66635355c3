"""お取り寄せ for home delivery at the stores (issue 18 §7, docs/channel.md "Home delivery").

The ordering store's clerk finds the missing size at another store and takes the customer's address:
:func:`order` writes ``delivery.requested`` to the outbox (sealed there: it carries the address), the clerk's
list row (``pickup_reservations``, so Ctrl+O shows HQ's answer as for a 取り置き) and this store's own
delivery row, in one transaction. HQ makes it a reservation held at the shipping store and sends that store
the address (``delivery.upsert``, stored here by :func:`_upsert`) ahead of the reservation, which the agent
confirms or rejects against its live ledger as any other.

**Shipping is a sale, paid on delivery** (代金引換): :func:`ship` sells the reserved units at the shipping store
with tender ``cod`` (the carrier collects it) and consumes the reservation in the sale's transaction, so the
stock leaves that store once, through the normal sale path, the member earns there, and the ordering store
hears ``picked_up`` (shown as shipped). The customer pays nothing at the ordering store.

``deliveries`` (edge migration 21, tenpo.edge.deliveries_schema): one row per delivery this store ordered
(``role`` ordered) or ships (``role`` ship). Name, address and phone are personal data: one sealed JSON value per
row (AES-GCM under the store's data key, bound to the reservation id), resealed when the data key rotates.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlite_utils

from tenpo.edge import keystore
from tenpo.edge.checkout.engine import checkout
from tenpo.edge.checkout.model import Payment, SaleRequest, Scan
from tenpo.edge.checkout.store import ReplicaProducts, SaleOrder, SoldSerials, checkout_rules, commit_sale
from tenpo.edge.checkout.tags import gtin_from_epc
from tenpo.edge.config import StoreConfig
from tenpo.edge.db import transaction
from tenpo.edge.membership import sealing
from tenpo.edge.outbox import append, next_counter
from tenpo.edge.reservations import store as reservations
from tenpo.shared.changes import DeliveryUpsert, rows_of
from tenpo.shared.errors import UserError
from tenpo.shared.events import DeliveryRequested
from tenpo.shared.field_bounds import MAX_FIELD_CHARS

COD = "cod"  # the tender of a delivery: 代金引換, collected by the carrier
ROLES = ("ordered", "ship")
SEALED = ("deliveries", "address", "reservation_id")  # (table, column, row id) for the data-key rotation


@dataclass(frozen=True, slots=True)
class Delivery:
    reservation_id: str
    role: str
    sku: str
    qty: int
    other_store: str
    member_id: str | None
    customer: str
    address: str
    phone: str | None
    state: str  # the reservation's state as this store knows it; picked_up = shipped
    receipt_no: str | None  # the sale that shipped it (shipping store)
    created_at: float
    erased: bool = False  # the member was erased: name, address and phone are gone

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def status(self) -> str:
        return "shipped" if self.state == "picked_up" else self.state


def _seal(conn: sqlite3.Connection, reservation_id: str, customer: str, address: str, phone: str | None) -> bytes:
    text = json.dumps({"customer": customer, "address": address, "phone": phone}, ensure_ascii=False)
    sealed = keystore.codec(conn).seal(text, *SEALED[:2], reservation_id)
    assert sealed is not None
    return sealed


def _insert(conn: sqlite3.Connection, reservation_id: str, role: str, sku: str, qty: int, other_store: str,
            member_id: str | None, customer: str, address: str, phone: str | None, clerk_id: str | None,
            version: int, now: float) -> None:  # fmt: skip
    conn.execute(
        "INSERT INTO deliveries(reservation_id, role, sku, qty, other_store, member_id, address, clerk_id, version,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(reservation_id) DO NOTHING",
        (reservation_id, role, sku, qty, other_store, member_id, _seal(conn, reservation_id, customer, address, phone),
         clerk_id, version, now),
    )  # fmt: skip


def _text(value: str | None, field: str, required: bool = True) -> str | None:
    text = (value or "").strip()
    if not text:
        if required:
            raise UserError(f"{field}: needed to deliver it")
        return None
    if len(text) > MAX_FIELD_CHARS:
        raise UserError(f"{field}: at most {MAX_FIELD_CHARS} characters")
    return text


# ---------------------------------------------------------------------------- the ordering store


def order(db: sqlite_utils.Database, store_id: str, clerk_id: str, *, sku: str, qty: int, from_store: str,
          customer: str, address: str, phone: str | None = None, member_id: str | None = None,
          now: float | None = None) -> str:  # fmt: skip
    """Order ``qty`` of ``sku`` from ``from_store`` for delivery to the customer's home; returns the id."""
    if qty < 1:
        raise UserError("qty: at least 1")
    if from_store == store_id:
        raise UserError("from: this store has it: sell it here (a delivery ships from another store)")
    name, where = _text(customer, "customer"), _text(address, "address")
    assert name is not None and where is not None
    tel = _text(phone, "phone", required=False)
    now = time.time() if now is None else now
    with transaction(db) as conn:
        if not conn.execute("SELECT 1 FROM products WHERE sku = ?", (sku,)).fetchone():
            raise UserError(f"sku: {sku} is not in the product list")
        reservation_id = f"{store_id}-D{next_counter(conn, 'delivery'):06d}"
        seq = append(conn, DeliveryRequested(reservation_id=reservation_id, sku=sku, qty=qty, from_store=from_store,
                                             member_id=member_id, customer=name, address=where, phone=tel,
                                             clerk_id=clerk_id, at=now))  # fmt: skip
        conn.execute(  # the clerk's list of what was asked of other stores shows it with HQ's answer
            "INSERT INTO pickup_reservations(reservation_id, sku, qty, from_store, member_id, customer, clerk_id,"
            " event_seq, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (reservation_id, sku, qty, from_store, member_id, sealing.seal_customer(conn, reservation_id, name),
             clerk_id, seq, now),
        )  # fmt: skip
        _insert(conn, reservation_id, "ordered", sku, qty, from_store, member_id, name, where, tel, clerk_id, 0, now)
    return reservation_id


# ---------------------------------------------------------------------------- HQ's change, at the shipping store


@rows_of(DeliveryUpsert)
def _upsert(conn: sqlite3.Connection, store_id: str, rows: list[DeliveryUpsert], version: int | None) -> None:
    for row in rows:
        if row.store_id == store_id:
            _insert(conn, row.reservation_id, "ship", row.sku, row.qty, row.ordered_at, row.member_id, row.customer,
                    row.address, row.phone, None, version or row.version, time.time())  # fmt: skip


CHANGE_HANDLERS = {"delivery.upsert": _upsert}  # merged into tenpo.edge.feed.CHANGE_HANDLERS


def erase_members(conn: sqlite3.Connection, member_ids: list[str]) -> int:
    """HQ's ``member.erase`` (tenpo.edge.feed): the member's deliveries here, ordered or to ship, lose name,
    address and phone (the row keeps SKU, quantity and stores, sealed ``{"erased": true}`` so a data-key
    rotation still opens it), and their reservations, held here or asked of another store, lose the
    customer. In the feed's transaction; secure_delete zeroes what it overwrites. How many deliveries."""
    marks = ", ".join("?" for _ in member_ids)
    rows = conn.execute(f"SELECT reservation_id FROM deliveries WHERE member_id IN ({marks})", member_ids).fetchall()
    erased = json.dumps({"erased": True})
    codec = keystore.codec(conn)
    conn.executemany("UPDATE deliveries SET address = ? WHERE reservation_id = ?",
                     [(codec.seal(erased, *SEALED[:2], rid), rid) for (rid,) in rows])  # fmt: skip
    for table in ("reservations", "pickup_reservations"):
        conn.execute(f"UPDATE {table} SET customer = NULL WHERE member_id IN ({marks}) AND customer IS NOT NULL",
                     member_ids)  # fmt: skip
    return len(rows)


# ---------------------------------------------------------------------------- listing and shipping


def _opened(conn: sqlite3.Connection, row: tuple[Any, ...]) -> Delivery:
    reservation_id, role, sku, qty, other, member_id, sealed, created_at, held_state, asked_state, receipt = row
    person = json.loads(keystore.codec(conn).open(bytes(sealed), *SEALED[:2], reservation_id) or "{}")
    state = (held_state if role == "ship" else asked_state) or "requested"
    return Delivery(reservation_id, role, sku, int(qty), other, member_id, person.get("customer", ""),
                    person.get("address", ""), person.get("phone"), state, receipt, float(created_at),
                    bool(person.get("erased")))  # fmt: skip


_SELECT = ("SELECT d.reservation_id, d.role, d.sku, d.qty, d.other_store, d.member_id, d.address, d.created_at,"
           " r.state, p.status, r.receipt_no FROM deliveries d"
           " LEFT JOIN reservations r ON r.reservation_id = d.reservation_id"
           " LEFT JOIN pickup_reservations p ON p.reservation_id = d.reservation_id")  # fmt: skip


def listing(db: sqlite_utils.Database, role: str | None = None, active_only: bool = False,
            limit: int = 200) -> list[Delivery]:  # fmt: skip
    """Newest first; ``active_only``: those still to ship (or, ordered here, not shipped yet)."""
    where, params = [], []
    if role:
        where.append("d.role = ?")
        params.append(role)
    if active_only:
        where.append("coalesce(CASE WHEN d.role = 'ship' THEN r.state ELSE p.status END, 'requested')"
                     " IN ('requested', 'confirmed', 'ready')")  # fmt: skip
    sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY d.created_at DESC LIMIT ?"
    return [_opened(db.conn, row) for row in db.conn.execute(sql, (*params, limit))]


def get(conn: sqlite3.Connection, reservation_id: str) -> Delivery | None:
    row = conn.execute(_SELECT + " WHERE d.reservation_id = ?", (reservation_id,)).fetchone()
    return None if row is None else _opened(conn, row)


def quote(conn: sqlite3.Connection, config: StoreConfig, sku: str, qty: int) -> int:
    """What the carrier collects: the sale's total as checkout would ring it up (tax as configured)."""
    scans = tuple(Scan(f"sku:{sku}") for _ in range(qty))
    request = SaleRequest(receipt_no="quote", at=datetime.now().astimezone(), scans=scans,
                          payments=(Payment("cash", 10**12),))  # fmt: skip
    sale = checkout(request, ReplicaProducts(conn), checkout_rules(config), gtin_from_epc=gtin_from_epc,
                    sold_serials=SoldSerials(conn))  # fmt: skip
    return sale.total


def ship(db: sqlite_utils.Database, config: StoreConfig, reservation_id: str, clerk_name: str | None = None,
         payments: tuple[Payment, ...] = ()) -> tuple[Delivery, Any]:  # fmt: skip
    """Send it: a sale of the reserved units (paid on delivery unless ``payments`` say otherwise) that consumes
    the reservation, so the stock leaves here as a sale and HQ hears ``reservation.picked_up``."""
    found = get(db.conn, reservation_id)
    if found is None or found.role != "ship":
        raise UserError(f"delivery {reservation_id}: not shipped from this store")
    if found.state not in reservations.HOLDING:
        raise UserError(f"delivery {reservation_id} is {found.status}: nothing to ship")
    if found.erased:
        raise UserError(f"delivery {reservation_id}: the customer was erased at their request; nowhere to ship it")
    member = found.member_id
    if member and not db.conn.execute("SELECT 1 FROM members WHERE member_id = ? AND erased = 0", (member,)).fetchone():
        member = None  # not known here (yet): shipped without points
    paid = payments or (Payment(COD, quote(db.conn, config, found.sku, found.qty)),)
    sale = commit_sale(db, config, SaleOrder(scans=tuple(Scan(f"sku:{found.sku}") for _ in range(found.qty)),
                                             member_id=member, payments=paid, clerk=clerk_name,
                                             reservation=reservation_id))  # fmt: skip
    done = get(db.conn, reservation_id)
    assert done is not None
    return done, sale
