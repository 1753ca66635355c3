"""The checkout engine: scans, a member and payments in, a Sale value out. No I/O.

The caller (the `tenpo edge checkout` command, the clerk terminal) looks up nothing itself: it
passes the replica's product list as a ProductLookup, the member as plain values, the receipt
number it allocated, and stores the returned Sale in one transaction. A refused sale raises a
CheckoutRefused error before anything is returned, so there is nothing to roll back.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from tenpo.edge.checkout.codes import CodeKind, EpcResolver, ScannedCode, read_code
from tenpo.edge.checkout.config import CheckoutConfig
from tenpo.edge.checkout.errors import (
    CheckoutRefused,
    Overpaid,
    PaymentShort,
    SerialAlreadySold,
    UnknownCode,
)
from tenpo.edge.checkout.model import (
    Discount,
    DiscountKind,
    Payment,
    PointsEntry,
    Product,
    ProductLookup,
    Sale,
    SaleKind,
    SaleLine,
    SaleRequest,
    Scan,
    StockMovement,
)
from tenpo.edge.checkout.points import check_redemption, points_earned
from tenpo.edge.checkout.returns import refund
from tenpo.edge.checkout.tax import rate_totals
from tenpo.shared.errors import ConfigError

CASH = "cash"
POINTS = "points"

__all__ = ["build_lines", "checkout", "receipt_discount_amounts", "refund", "settle"]


def checkout(
    request: SaleRequest,
    products: ProductLookup,
    config: CheckoutConfig,
    *,
    gtin_from_epc: EpcResolver | None = None,
    sold_serials: Container[tuple[str, str]] = frozenset(),
) -> Sale:
    """Price, tax and settle one sale.

    `sold_serials` answers `(gtin, serial) in sold_serials` for RFID items already sold (a set,
    or an object whose __contains__ asks the database).
    """
    lines = build_lines(request.scans, products, config, gtin_from_epc, sold_serials)
    subtotal = sum(line.total for line in lines)
    discounts = receipt_discount_amounts(request.receipt_discounts, subtotal)
    by_rate: dict[int, int] = {}
    for line in lines:
        by_rate[line.rate] = by_rate.get(line.rate, 0) + line.total
    rates = rate_totals(
        by_rate,
        sum(amount for _, amount in discounts),
        prices_include_tax=config.prices_include_tax,
        rounding=config.tax_rounding,
    )
    total = sum(r.taxable for r in rates)

    redeemed = request.redeem_points + sum(p.amount for p in request.payments if p.tender == POINTS)
    member = request.member
    check_redemption(redeemed, total=total, member=member, offline=request.offline, config=config)
    tenders = tuple(p for p in request.payments if p.tender != POINTS)
    change = settle(total, redeemed, tenders)
    payments = ((Payment(POINTS, redeemed),) if redeemed else ()) + tenders

    earned = points_earned(total, redeemed, config, member.multiplier_pct) if member else 0  # at the member's rank
    entries: list[PointsEntry] = []
    if member and redeemed:
        entries.append(PointsEntry(member.member_id, "redeem", -redeemed))
    if member and earned:
        entries.append(PointsEntry(member.member_id, "accrue", earned))
    return Sale(
        receipt_no=request.receipt_no,
        kind=SaleKind.SALE,
        at=request.at,
        prices_include_tax=config.prices_include_tax,
        lines=lines,
        subtotal=subtotal,
        receipt_discounts=discounts,
        rates=rates,
        total=total,
        payments=payments,
        change=change,
        member_id=member.member_id if member else None,
        points_earned=earned,
        points_redeemed=redeemed,
        points_balance_after=member.points_balance - redeemed + earned if member else None,
        stock_movements=tuple(StockMovement(line.sku, -line.qty, line.serial) for line in lines),
        points_entries=tuple(entries),
        tax_rounding=config.tax_rounding,
    )


def build_lines(
    scans: Iterable[Scan],
    products: ProductLookup,
    config: CheckoutConfig,
    gtin_from_epc: EpcResolver | None = None,
    sold_serials: Container[tuple[str, str]] = frozenset(),
) -> tuple[SaleLine, ...]:
    """One line per product and price, in order of first scan; a repeated scan adds a unit.

    Not merged: RFID items (one line per serial), and scans that carry their own discount.
    The same RFID tag read twice in one sale is one item: readers report a tag many times.
    """
    lines: list[SaleLine] = []
    merged_at: dict[tuple[str, int], int] = {}  # (sku, unit price) -> index in lines
    serials_seen: set[tuple[str, str]] = set()
    for scan in scans:
        if scan.qty < 1:
            raise CheckoutRefused(f"{scan.code}: quantity must be at least 1, got {scan.qty}")
        code = read_code(scan.code, config.instore_layouts, gtin_from_epc)
        product = products.by_sku(code.key) if code.kind is CodeKind.SKU else products.by_gtin(code.key)
        if product is None:
            raise UnknownCode(scan.code)
        price = code.embedded_price if code.embedded_price is not None else product.unit_price
        if code.serial is not None:
            identity = (code.key, code.serial)
            if identity in sold_serials:
                raise SerialAlreadySold(*identity)
            if identity not in serials_seen:
                serials_seen.add(identity)
                lines.append(_line(product, code, price, 1, scan.discount, config))
            continue
        key = (product.sku, price)
        if scan.discount is None and key in merged_at:
            first = lines[merged_at[key]]
            qty = first.qty + scan.qty
            lines[merged_at[key]] = _line(product, code, price, qty, None, config, first.code)
            continue
        if scan.discount is None:
            merged_at[key] = len(lines)
        lines.append(_line(product, code, price, scan.qty, scan.discount, config))
    return tuple(lines)


def _line(
    product: Product,
    code: ScannedCode,
    price: int,
    qty: int,
    discount: Discount | None,
    config: CheckoutConfig,
    shown_code: str | None = None,
) -> SaleLine:
    try:
        rate = config.rate_of(product.tax_class)
    except ConfigError:
        raise CheckoutRefused(
            f"{code.raw}: product {product.sku} has tax_class {product.tax_class!r}, "
            "not 'standard' or 'reduced'"
        ) from None
    gross = price * qty
    off = discount.amount_off(gross) if discount else 0
    return SaleLine(
        sku=product.sku,
        gtin=product.gtin or (code.key if code.kind is not CodeKind.SKU else None),
        name=product.name,
        qty=qty,
        unit_price=price,
        tax_class=product.tax_class,
        rate=rate,
        discount=off,
        total=gross - off,
        serial=code.serial,
        code=shown_code or code.raw,
    )


def receipt_discount_amounts(discounts: Iterable[Discount], subtotal: int) -> tuple[tuple[str, int], ...]:
    """Yen off for each receipt discount/coupon, each applied to what the previous ones left."""
    left = subtotal
    result: list[tuple[str, int]] = []
    for discount in discounts:
        off = discount.amount_off(left)
        left -= off
        label = discount.label or (f"値引 {discount.value}%" if discount.kind is DiscountKind.PERCENT else "値引")
        result.append((label, off))
    return tuple(result)


def settle(total: int, redeemed: int, tenders: tuple[Payment, ...]) -> int:
    """Change due in cash; refuses short payment and non-cash tenders beyond what is due."""
    for payment in tenders:
        if payment.amount < 1:
            raise CheckoutRefused(f"payment {payment.tender}:{payment.amount}: amount must be at least ¥1")
    due = total - redeemed
    non_cash = sum(p.amount for p in tenders if p.tender != CASH)
    if non_cash > due:
        raise Overpaid(f"non-cash payments ¥{non_cash:,} exceed the ¥{due:,} due; only cash gives change")
    paid = redeemed + non_cash + sum(p.amount for p in tenders if p.tender == CASH)
    if paid < total:
        raise PaymentShort(total, paid)
    return paid - total
