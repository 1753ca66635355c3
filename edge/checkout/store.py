"""Sales on the store replica: the imperative shell around the pure checkout engine.

One ``BEGIN IMMEDIATE`` transaction per sale allocates the receipt number, reads products and the
member from the replica, runs the engine, and writes the sale, its lines, stock and points ledger
entries and their outbox events. A refusal raises inside the transaction, so it rolls back whole:
nothing is written and the receipt number is not used up. A kill -9 at any moment leaves either
the committed sale or nothing (SQLite's WAL), and the counter row commits with the sale, so a
number is never handed out twice.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlite_utils

from tenpo.edge.checkout.codes import canonical_gtin
from tenpo.edge.checkout.config import CheckoutConfig, parse_checkout_config
from tenpo.edge.checkout.engine import checkout, refund
from tenpo.edge.checkout.errors import CheckoutRefused
from tenpo.edge.checkout.model import (
    Discount,
    MemberInfo,
    Payment,
    Product,
    Sale,
    SaleKind,
    SaleRequest,
    Scan,
    sale_from_json,
    sale_to_json,
)
from tenpo.edge.checkout.points import points_earned
from tenpo.edge.checkout.receipt import render_receipt
from tenpo.edge.checkout.tags import gtin_from_epc
from tenpo.edge.config import StoreConfig
from tenpo.edge.db import transaction
from tenpo.edge.ledgers import post_points, post_stock
from tenpo.edge.loyalty import standing
from tenpo.edge.outbox import append_event, next_counter, read_counter
from tenpo.edge.replica import find_members, get_member
from tenpo.edge.reservations.store import consume as consume_reservation
from tenpo.shared.events import PointsKind, SaleCompleted, SaleRefunded
from tenpo.shared.ids import is_id

RECEIPT_COUNTER = "receipt"
LOCATION = "floor"
# Engine ledger kinds -> the points.entry kinds of the protocol (docs/protocol.md).
POINTS_KINDS: dict[str, PointsKind] = {
    "redeem": "redemption", "accrue": "accrual", "redeem-return": "reversal", "accrue-reversal": "reversal",
}  # fmt: skip
STOCK_REASONS = {SaleKind.SALE: "sale", SaleKind.REFUND: "return"}
SALE_EVENTS: dict[SaleKind, type[SaleCompleted]] = {SaleKind.SALE: SaleCompleted, SaleKind.REFUND: SaleRefunded}


@dataclass(frozen=True, slots=True)
class SaleOrder:
    """What the clerk entered: the engine's request minus what the store supplies."""

    scans: tuple[Scan, ...]
    member_id: str | None = None
    redeem_points: int = 0
    payments: tuple[Payment, ...] = ()
    receipt_discounts: tuple[Discount, ...] = ()
    clerk: str | None = None  # printed on the receipt as 担当
    offline: bool = False  # the receipt says the sale was made offline
    reservation: str | None = None  # a reservation this sale hands over (issue 18): consumed in its transaction


@dataclass(frozen=True, slots=True)
class StoredSale:
    sale: Sale
    receipt: str  # the text as printed


def checkout_rules(config: StoreConfig) -> CheckoutConfig:
    """The `[checkout]` table of the store config (every field optional)."""
    return parse_checkout_config(config.raw)


def receipt_number(store_id: str, n: int) -> str:
    return f"{store_id}-{n:08d}"


def allocate_receipt_no(conn: sqlite3.Connection, store_id: str) -> str:
    """Next receipt number; call inside the sale's transaction so it commits or rolls back with it."""
    return receipt_number(store_id, next_counter(conn, RECEIPT_COUNTER))


def normalise_receipt_no(store_id: str, text: str) -> str:
    """`12` or `S001-00000012` -> `S001-00000012` (clerks type the short form)."""
    text = text.strip()
    return receipt_number(store_id, int(text)) if text.isdigit() else text


# ---------------------------------------------------------------------------- replica adapters


class ReplicaProducts:
    """The engine's ProductLookup over the replica's products table."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def by_gtin(self, gtin: str) -> Product | None:
        # The product file may hold a UPC-A as its 12 printed digits; the engine asks with 13.
        alt = gtin[1:] if len(gtin) == 13 and gtin[0] == "0" else gtin
        row = self._conn.execute(
            "SELECT sku, jan, name, price, tax_class FROM products WHERE jan IN (?, ?) LIMIT 1", (gtin, alt)
        ).fetchone()
        return Product(*row) if row else None

    def by_sku(self, sku: str) -> Product | None:
        row = self._conn.execute(
            "SELECT sku, jan, name, price, tax_class FROM products WHERE sku = ?", (sku,)
        ).fetchone()
        return Product(*row) if row else None


class SoldSerials:
    """`(gtin, serial) in sold`: an RFID item sold here and not returned."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __contains__(self, item: object) -> bool:
        gtin, serial = cast("tuple[str, str]", item)  # checkout asks with (gtin, serial)
        return bool(
            self._conn.execute(
                "SELECT 1 FROM sold_serials WHERE gtin = ? AND serial = ? AND returned_in IS NULL",
                (canonical_gtin(gtin), serial),
            ).fetchone()
        )


def member_info(conn: sqlite3.Connection, member_id: str, now: float | None = None) -> MemberInfo:
    """Balance and this offline period's redemptions, as the engine needs them.

    The offline period is everything since HQ's last balance for this member: our own entries with
    store_seq above members.points_through. Redeemed points a refund gave back count against it no
    more (a positive reversal), so a return does not use up the member's offline allowance.
    """
    row = conn.execute(
        "SELECT points_hq, points_through FROM members WHERE member_id = ? AND erased = 0", (member_id,)
    ).fetchone()
    if row is None:
        raise CheckoutRefused(f"member {member_id}: not in this store's member list")
    hq_balance, through = int(row[0]), int(row[1])
    local, redeemed = conn.execute(
        "SELECT coalesce(sum(delta), 0),"
        " coalesce(sum(CASE WHEN kind = 'redemption' OR (kind = 'reversal' AND delta > 0) THEN -delta END), 0)"
        " FROM points_ledger WHERE member_id = ? AND store_seq > ?",
        (member_id, through),
    ).fetchone()
    balance = hq_balance + int(local)
    held = standing(conn, member_id, balance, now=now)  # issue 17: rank and lots from HQ, offline too
    return MemberInfo(member_id, balance, max(int(redeemed), 0), held.rank, held.multiplier_pct, held.expired)


# ---------------------------------------------------------------------------- sales and refunds


def commit_sale(
    db: sqlite_utils.Database,
    config: StoreConfig,
    order: SaleOrder,
    *,
    at: datetime | None = None,
    rules: CheckoutConfig | None = None,
) -> Sale:
    """Sell `order` in one transaction; raises a CheckoutRefused error (nothing written) if refused."""
    rules = rules or checkout_rules(config)
    at = at or datetime.now().astimezone()
    with transaction(db) as conn:
        request = SaleRequest(
            receipt_no=allocate_receipt_no(conn, config.store_id),
            at=at,
            scans=order.scans,
            member=member_info(conn, order.member_id, at.timestamp()) if order.member_id else None,
            redeem_points=order.redeem_points,
            payments=order.payments,
            receipt_discounts=order.receipt_discounts,
        )
        sale = checkout(
            request, ReplicaProducts(conn), rules, gtin_from_epc=gtin_from_epc, sold_serials=SoldSerials(conn)
        )
        _write_sale(conn, sale, render_receipt(sale, rules, store_name=config.name, clerk=order.clerk,
                                               offline=order.offline), accrual_fields(request.member, sale, rules))  # fmt: skip
        if order.reservation:  # pickup: the sale consumes the reservation, or neither happens
            consume_reservation(conn, order.reservation, sale.receipt_no, [(line.sku, line.qty) for line in sale.lines],
                                clerk_id=order.clerk if order.clerk and is_id(order.clerk) else None)  # fmt: skip
    return sale


def refund_sale(
    db: sqlite_utils.Database,
    config: StoreConfig,
    receipt_no: str,
    *,
    lines: Mapping[int, int | None] | None = None,
    at: datetime | None = None,
    rules: CheckoutConfig | None = None,
    clerk: str | None = None,
    offline: bool = False,
) -> Sale:
    """Take back an earlier sale of this store: all that is left of it (lines=None), or `lines`
    {line number on the receipt: qty, or None for all left of it}. Earlier returns of the receipt are read in the same
    transaction, so nothing comes back twice; a refusal writes nothing."""
    rules = rules or checkout_rules(config)
    at = at or datetime.now().astimezone()
    receipt_no = normalise_receipt_no(config.store_id, receipt_no)
    with transaction(db) as conn:
        row = conn.execute("SELECT sale FROM sales WHERE receipt_no = ?", (receipt_no,)).fetchone()
        if row is None:
            raise CheckoutRefused(f"receipt {receipt_no}: not found in this store")
        original = sale_from_json(json.loads(row[0]))
        earlier = tuple(
            sale_from_json(json.loads(data))
            for (data,) in conn.execute("SELECT sale FROM sales WHERE refund_of = ? ORDER BY receipt_no", (receipt_no,))
        )
        back = refund(
            original, allocate_receipt_no(conn, config.store_id), at, lines, earlier, tax_rounding=rules.tax_rounding
        )
        if back.member_id is not None:
            current = member_info(conn, back.member_id).points_balance
            back = dataclasses.replace(
                back, points_balance_after=current + sum(e.points for e in back.points_entries)
            )
        _write_sale(conn, back, render_receipt(back, rules, store_name=config.name, clerk=clerk, offline=offline))
    return back


def accrual_fields(member: MemberInfo | None, sale: Sale, rules: CheckoutConfig) -> dict[str, Any]:
    """What a sale's accrual event says of the rank it earned at, so HQ can hold it to that rank (issue 17)."""
    if member is None or member.rank is None:
        return {}
    base = points_earned(sale.total, sale.points_redeemed, rules)
    return {"rank": member.rank, "multiplier_pct": member.multiplier_pct, "base": base}


def _write_sale(conn: sqlite3.Connection, sale: Sale, receipt: str, accrual: dict[str, Any] | None = None) -> None:
    """Ledger entries each with its own event (the core stock.moved / points.entry HQ already
    applies), then the sale itself, whose event comes last so HQ has its movements when it sees it."""
    now = time.time()
    reason = STOCK_REASONS[sale.kind]
    for move in sale.stock_movements:
        post_stock(conn, sku=move.sku, delta=move.qty, reason=reason, location=LOCATION, ref=sale.receipt_no, now=now)
    for entry in sale.points_entries:
        post_points(conn, member_id=entry.member_id, delta=entry.points, kind=POINTS_KINDS[entry.kind],
                    loyalty=accrual if entry.kind == "accrue" else None,
                    ref=sale.receipt_no, now=now)  # fmt: skip
    data = sale_to_json(sale)
    # feed_cursor: how much of HQ's change feed this store had seen, so HQ can tell which other
    # stores' entries it could not have known about (docs/checkout.md, reconciliation).
    seq = append_event(conn, SALE_EVENTS[sale.kind].TYPE, {**data, "feed_cursor": read_counter(conn, "cursor")})
    conn.execute(
        "INSERT INTO sales(receipt_no, kind, refund_of, at, member_id, total, tax, points_earned, points_redeemed,"
        " sale, receipt, event_seq, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sale.receipt_no, sale.kind.value, sale.refund_of, sale.at.isoformat(), sale.member_id, sale.total,
            sale.tax, sale.points_earned, sale.points_redeemed, json.dumps(data, ensure_ascii=False), receipt,
            seq, now,
        ),
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO sale_lines(receipt_no, line_no, sku, gtin, name, qty, unit_price, rate, discount, total, serial)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (sale.receipt_no, n, line.sku, line.gtin, line.name, line.qty, line.unit_price, line.rate,
             line.discount, line.total, line.serial)
            for n, line in enumerate(sale.lines, start=1)
        ],
    )  # fmt: skip
    serials = [(canonical_gtin(line.gtin), line.serial) for line in sale.lines if line.serial and line.gtin]
    if sale.kind is SaleKind.SALE:
        conn.executemany(
            "INSERT INTO sold_serials(gtin, serial, receipt_no) VALUES (?, ?, ?)",
            [(gtin, serial, sale.receipt_no) for gtin, serial in serials],
        )
    else:
        conn.executemany(
            "UPDATE sold_serials SET returned_in = ? WHERE gtin = ? AND serial = ? AND receipt_no = ?",
            [(sale.receipt_no, gtin, serial, sale.refund_of) for gtin, serial in serials],
        )


# ---------------------------------------------------------------------------- reads


def load_sale(db: sqlite_utils.Database, store_id: str, receipt_no: str) -> StoredSale | None:
    row = db.conn.execute(
        "SELECT sale, receipt FROM sales WHERE receipt_no = ?", (normalise_receipt_no(store_id, receipt_no),)
    ).fetchone()
    return StoredSale(sale_from_json(json.loads(row[0])), row[1]) if row else None


def summary_json(sale: Sale) -> dict[str, object]:
    """The fixed keys scripts rely on (`tenpo edge checkout --json`, `tenpo edge refund --json`)."""
    full = sale_to_json(sale)
    return {key: full[key] for key in ("receipt_no", "total", "tax_by_rate", "points_earned", "points_redeemed", "change")}


def find_member_id(db: sqlite_utils.Database, query: str) -> str:
    """The one member a clerk means by a member id, card number, phone, email or name prefix."""
    exact = get_member(db, query.strip())
    if exact is not None:
        return exact.member_id
    found = find_members(db, query, limit=3)
    if not found:
        raise CheckoutRefused(f"member {query!r}: no member matches")
    if len(found) > 1:
        raise CheckoutRefused(f"member {query!r}: several members match; use the card number or phone")
    return found[0].member_id
