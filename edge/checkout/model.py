"""Values the checkout engine takes and returns. Money is integer yen everywhere."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tenpo.edge.checkout.config import Rounding
from tenpo.edge.checkout.errors import BadDiscount, CheckoutRefused
from tenpo.edge.checkout.tax import RateTotal


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    gtin: str | None  # as printed: 13 or 8 digits (14 for a GTIN-14 with an indicator digit)
    name: str
    unit_price: int  # yen; includes tax unless the store config says prices_include_tax = false
    tax_class: str  # "standard" (10 %) or "reduced" (8 %)


class ProductLookup(Protocol):
    """The replica's product list, as the engine sees it."""

    def by_gtin(self, gtin: str) -> Product | None: ...

    def by_sku(self, sku: str) -> Product | None: ...


class DiscountKind(enum.StrEnum):
    AMOUNT = "amount"
    PERCENT = "percent"


@dataclass(frozen=True, slots=True)
class Discount:
    """A line discount or a receipt discount/coupon: so many yen, or a whole percent."""

    kind: DiscountKind
    value: int
    label: str = ""

    def __post_init__(self) -> None:
        if self.kind is DiscountKind.PERCENT and not 1 <= self.value <= 100:
            raise BadDiscount(f"discount {self.value}%: percent must be 1 to 100")
        if self.kind is DiscountKind.AMOUNT and self.value < 1:
            raise BadDiscount(f"discount {self.value}: amount must be at least ¥1")

    @classmethod
    def parse(cls, text: str, label: str = "") -> Discount:
        """'10%' or '100' (yen)."""
        body = text.strip().removeprefix("¥")
        kind = DiscountKind.PERCENT if body.endswith("%") else DiscountKind.AMOUNT
        try:
            value = int(body.removesuffix("%"))
        except ValueError:
            raise BadDiscount(f"discount {text!r}: expected yen like 100 or a percent like 10%") from None
        return cls(kind, value, label)

    def amount_off(self, base: int) -> int:
        """Yen taken off `base`; a percent is rounded down, in the customer's disfavour by < ¥1."""
        off = base * self.value // 100 if self.kind is DiscountKind.PERCENT else self.value
        if off > base:
            raise BadDiscount(f"discount ¥{off:,} is more than the ¥{base:,} it applies to")
        return off


@dataclass(frozen=True, slots=True)
class Scan:
    """One item entry at the counter; scanning the same code twice is two units."""

    code: str
    qty: int = 1
    discount: Discount | None = None


@dataclass(frozen=True, slots=True)
class MemberInfo:
    member_id: str
    points_balance: int
    redeemed_this_offline_period: int = 0  # points this member redeemed in this store since going offline
    # loyalty (issue 17, docs/loyalty.md): the rank HQ last sent, its earning multiplier, and points in the
    # balance whose lots ended (not redeemable, HQ's expiry entry is on its way)
    rank: str | None = None
    multiplier_pct: int = 100
    expired_points: int = 0


@dataclass(frozen=True, slots=True)
class Payment:
    tender: str  # "cash", "points", or any other tender type ("card", "qr", "emoney" ...)
    amount: int

    @classmethod
    def parse(cls, text: str) -> Payment:
        """'cash:1000' -> Payment("cash", 1000), as `--pay` takes it."""
        tender, _, amount = text.partition(":")
        if not tender.strip() or not amount.strip().isdigit():
            raise CheckoutRefused(f"payment {text!r}: expected TENDER:YEN, e.g. cash:1000")
        return cls(tender.strip().lower(), int(amount))


@dataclass(frozen=True, slots=True)
class SaleRequest:
    receipt_no: str  # allocated by the caller in the same transaction that stores the sale
    at: datetime
    scans: tuple[Scan, ...]
    member: MemberInfo | None = None
    redeem_points: int = 0
    payments: tuple[Payment, ...] = ()
    receipt_discounts: tuple[Discount, ...] = ()
    offline: bool = True  # offline: redemption caps apply


@dataclass(frozen=True, slots=True)
class SaleLine:
    sku: str
    gtin: str | None
    name: str
    qty: int  # negative on a refund
    unit_price: int
    tax_class: str
    rate: int
    discount: int  # line discount in yen (negative on a refund)
    total: int  # unit_price * qty - discount
    serial: str | None = None  # SGTIN serial when sold by RFID
    code: str = ""  # what was scanned
    of_line: int | None = None  # on a refund: this line's number (1-based) on the original receipt

    @property
    def gross(self) -> int:
        return self.unit_price * self.qty


@dataclass(frozen=True, slots=True)
class StockMovement:
    sku: str
    qty: int  # -qty on a sale, +qty on a refund
    serial: str | None = None


@dataclass(frozen=True, slots=True)
class PointsEntry:
    member_id: str
    kind: str  # "redeem", "accrue", "redeem-return", "accrue-reversal"
    points: int  # signed change of the member's balance


class SaleKind(enum.StrEnum):
    SALE = "sale"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class Sale:
    """Everything needed to persist, print and sync one sale or refund."""

    receipt_no: str
    kind: SaleKind
    at: datetime
    prices_include_tax: bool
    lines: tuple[SaleLine, ...]
    subtotal: int  # sum of line totals (price basis)
    receipt_discounts: tuple[tuple[str, int], ...]  # (label, yen) per receipt discount/coupon
    rates: tuple[RateTotal, ...]
    total: int  # yen to pay, tax included
    payments: tuple[Payment, ...]
    change: int
    member_id: str | None
    points_earned: int
    points_redeemed: int
    points_balance_after: int | None
    stock_movements: tuple[StockMovement, ...]
    points_entries: tuple[PointsEntry, ...]
    refund_of: str | None = None
    tax_rounding: Rounding | None = None  # the mode the receipt's tax was rounded with (None: older sale)

    @property
    def receipt_discount(self) -> int:
        return sum(amount for _, amount in self.receipt_discounts)

    @property
    def tax(self) -> int:
        return sum(r.tax for r in self.rates)


def sale_to_json(sale: Sale) -> dict[str, Any]:
    """The JSON view scripts rely on (`tenpo edge checkout --json`)."""
    return {
        "receipt_no": sale.receipt_no,
        "kind": sale.kind.value,
        "refund_of": sale.refund_of,
        "tax_rounding": sale.tax_rounding.value if sale.tax_rounding else None,
        "at": sale.at.isoformat(),
        "prices_include_tax": sale.prices_include_tax,
        "member_id": sale.member_id,
        "lines": [
            {
                "sku": line.sku,
                "gtin": line.gtin,
                "name": line.name,
                "qty": line.qty,
                "unit_price": line.unit_price,
                "tax_class": line.tax_class,
                "rate": line.rate,
                "discount": line.discount,
                "total": line.total,
                "serial": line.serial,
                "code": line.code,
                "of_line": line.of_line,
            }
            for line in sale.lines
        ],
        "subtotal": sale.subtotal,
        "receipt_discounts": [{"label": label, "amount": amount} for label, amount in sale.receipt_discounts],
        "tax_by_rate": {str(r.rate): {"taxable": r.taxable, "tax": r.tax} for r in sale.rates},
        "rates": [
            {"rate": r.rate, "lines": r.lines, "discount": r.discount, "taxable": r.taxable, "tax": r.tax}
            for r in sale.rates
        ],
        "total": sale.total,
        "payments": [{"tender": p.tender, "amount": p.amount} for p in sale.payments],
        "change": sale.change,
        "points_earned": sale.points_earned,
        "points_redeemed": sale.points_redeemed,
        "points_balance_after": sale.points_balance_after,
        "stock_movements": [{"sku": m.sku, "qty": m.qty, "serial": m.serial} for m in sale.stock_movements],
        "points_entries": [
            {"member_id": e.member_id, "kind": e.kind, "points": e.points} for e in sale.points_entries
        ],
    }


def sale_from_json(data: dict[str, Any]) -> Sale:
    """Inverse of sale_to_json, so a stored sale can be refunded later."""
    member_id = data["member_id"]
    rounding = data.get("tax_rounding")
    return Sale(
        receipt_no=data["receipt_no"],
        kind=SaleKind(data["kind"]),
        at=datetime.fromisoformat(data["at"]),
        prices_include_tax=data["prices_include_tax"],
        lines=tuple(SaleLine(**line) for line in data["lines"]),
        subtotal=data["subtotal"],
        receipt_discounts=tuple((d["label"], d["amount"]) for d in data["receipt_discounts"]),
        rates=tuple(RateTotal(**r) for r in data["rates"]),
        total=data["total"],
        payments=tuple(Payment(p["tender"], p["amount"]) for p in data["payments"]),
        change=data["change"],
        member_id=member_id,
        points_earned=data["points_earned"],
        points_redeemed=data["points_redeemed"],
        points_balance_after=data["points_balance_after"],
        stock_movements=tuple(StockMovement(**m) for m in data["stock_movements"]),
        points_entries=tuple(PointsEntry(**e) for e in data["points_entries"]),
        refund_of=data["refund_of"],
        tax_rounding=Rounding(rounding) if rounding else None,
    )
