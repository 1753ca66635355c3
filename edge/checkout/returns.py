"""Refunds, whole or partial (返品): what goes back when some or all of a receipt comes back. No I/O.

Every figure of a return is "what has gone back in all once these quantities are back" minus "what
earlier returns of the receipt already gave back". Those running totals only grow, and they reach
the original figures exactly when everything is back. So any sequence of partial returns adds up
to the whole refund, and none gives back more than was sold (docs/checkout.md, partial returns).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from tenpo.edge.checkout.config import Rounding
from tenpo.edge.checkout.errors import NotRefundable
from tenpo.edge.checkout.model import Payment, PointsEntry, Sale, SaleKind, SaleLine, StockMovement
from tenpo.edge.checkout.tax import RateTotal, allocate, tax_of

CASH = "cash"
POINTS = "points"


def parse_returned_line(text: str) -> tuple[int, int | None]:
    """'2' -> (2, None): all that is left of line 2; '2:1' -> (2, 1). ValueError says what is wrong."""
    number, _, qty = text.partition(":")
    try:
        parsed = (int(number), int(qty) if qty else None)
    except ValueError:
        raise ValueError(f"{text!r}: expected a line number, or N:QTY like 2:1") from None
    if parsed[0] < 1 or (parsed[1] is not None and parsed[1] < 1):
        raise ValueError(f"{text!r}: line number and quantity must be at least 1")
    return parsed


def returned_lines(picked: list[tuple[int, int | None]]) -> dict[int, int | None] | None:
    """Picked (line, qty) pairs as refund_sale takes them; the same line twice adds up; none = everything left."""
    if not picked:
        return None
    lines: dict[int, int | None] = {}
    for number, qty in picked:
        if qty is None or lines.get(number, 0) is None:
            lines[number] = None
        else:
            lines[number] = (lines.get(number) or 0) + qty
    return lines


@dataclass(slots=True)
class Returned:
    """What earlier returns of one receipt gave back, as positive numbers."""

    receipts: list[str] = field(default_factory=list)
    qty: dict[int, int] = field(default_factory=dict)  # by original line index (0-based)
    line_discount: dict[int, int] = field(default_factory=dict)
    rate_lines: dict[int, int] = field(default_factory=dict)
    rate_discount: dict[int, int] = field(default_factory=dict)
    rate_tax: dict[int, int] = field(default_factory=dict)
    total: int = 0
    tenders: dict[str, int] = field(default_factory=dict)
    points_earned: int = 0  # points taken back
    points_redeemed: int = 0  # points given back


def returned_so_far(sale: Sale, already_returned: Iterable[Sale]) -> Returned:
    """Sum the earlier refunds of `sale`; a refund of another receipt is a caller's mistake."""
    done = Returned()
    for back in already_returned:
        if back.kind is not SaleKind.REFUND or back.refund_of != sale.receipt_no:
            raise ValueError(f"{back.receipt_no} is not a refund of {sale.receipt_no}")
        done.receipts.append(back.receipt_no)
        for position, line in enumerate(back.lines):
            # A whole refund made before partial returns existed lists every line, in order.
            index = line.of_line - 1 if line.of_line else position
            _add(done.qty, index, -line.qty)
            _add(done.line_discount, index, -line.discount)
        for rate in back.rates:
            _add(done.rate_lines, rate.rate, -rate.lines)
            _add(done.rate_discount, rate.rate, -rate.discount)
            _add(done.rate_tax, rate.rate, -rate.tax)
        for payment in back.payments:
            _add(done.tenders, payment.tender, -payment.amount)
        done.total -= back.total
        done.points_earned -= back.points_earned
        done.points_redeemed -= back.points_redeemed
    return done


def refund(
    sale: Sale,
    receipt_no: str,
    at: datetime,
    lines: Mapping[int, int | None] | None = None,
    already_returned: Sequence[Sale] = (),
    *,
    tax_rounding: Rounding | None = None,
) -> Sale:
    """Take back all of `sale` (lines=None) or `lines` {line number as printed, 1-based: qty};
    a qty of None takes back all that is left of that line.

    `already_returned` are the earlier refunds of this receipt; lines=None then takes back what
    they left. The tax is rounded with the mode recorded on the sale, else `tax_rounding`, else
    round-down. Refuses (NotRefundable) a refund, a line not on the receipt, and more than is left.
    """
    if sale.kind is not SaleKind.SALE:
        raise NotRefundable(f"{sale.receipt_no}: is a refund itself and cannot be refunded")
    done = returned_so_far(sale, already_returned)
    wanted = _wanted(sale, lines, done)
    rounding = sale.tax_rounding or tax_rounding or Rounding.DOWN

    back_lines: list[SaleLine] = []
    by_rate: dict[int, int] = {}
    for index, qty in enumerate(wanted):
        if not qty:
            continue
        line = sale.lines[index]
        after = done.qty.get(index, 0) + qty
        # The line discount goes back pro rata, rounded up, so the money is rounded down until
        # the last unit comes back and takes the remainder.
        discount_after = -(-line.discount * after // line.qty)
        discount = max(discount_after - done.line_discount.get(index, 0), 0)
        total = line.unit_price * qty - discount
        by_rate[line.rate] = by_rate.get(line.rate, 0) + total
        back_lines.append(
            SaleLine(line.sku, line.gtin, line.name, -qty, line.unit_price, line.tax_class, line.rate,
                     -discount, -total, line.serial, line.code, of_line=index + 1)
        )  # fmt: skip

    rates: list[RateTotal] = []
    for original in sale.rates:
        if original.rate not in by_rate:
            continue
        rates.append(_rate_back(sale, original, by_rate[original.rate], wanted, done, rounding))
    total = sum(r.taxable for r in rates)

    paid_back = _pay_back(sale, total, done)
    redeemed_back = paid_back.get(POINTS, 0)
    earned_back = _points_taken_back(sale, sum(a for t, a in paid_back.items() if t != POINTS), done)
    entries: list[PointsEntry] = []
    if sale.member_id and redeemed_back:
        entries.append(PointsEntry(sale.member_id, "redeem-return", redeemed_back))
    if sale.member_id and earned_back:
        entries.append(PointsEntry(sale.member_id, "accrue-reversal", -earned_back))
    discount_back = sum(r.discount for r in rates)
    return Sale(
        receipt_no=receipt_no,
        kind=SaleKind.REFUND,
        at=at,
        prices_include_tax=sale.prices_include_tax,
        lines=tuple(back_lines),
        subtotal=-sum(by_rate.values()),
        receipt_discounts=_discount_labels(sale, sum(done.rate_discount.values()), discount_back),
        rates=tuple(RateTotal(r.rate, -r.lines, -r.discount, -r.taxable, -r.tax) for r in rates),
        total=-total,
        payments=tuple(Payment(tender, -amount) for tender, amount in paid_back.items() if amount),
        change=0,
        member_id=sale.member_id,
        points_earned=-earned_back,
        points_redeemed=-redeemed_back,
        points_balance_after=None,  # the caller knows the balance now, the old sale does not
        stock_movements=tuple(StockMovement(line.sku, -line.qty, line.serial) for line in back_lines),
        points_entries=tuple(entries),
        refund_of=sale.receipt_no,
        tax_rounding=rounding,
    )


def _wanted(sale: Sale, lines: Mapping[int, int | None] | None, done: Returned) -> list[int]:
    """Quantity to take back per line index; refuses what is not on the receipt or not left."""
    left = [line.qty - done.qty.get(i, 0) for i, line in enumerate(sale.lines)]
    if not any(left):
        raise NotRefundable(f"receipt {sale.receipt_no}: already refunded by {', '.join(done.receipts)}")
    if lines is None:
        return left
    if not lines:
        raise NotRefundable(f"receipt {sale.receipt_no}: no lines to return")
    wanted = [0] * len(sale.lines)
    for number, qty in lines.items():
        if not 1 <= number <= len(sale.lines):
            raise NotRefundable(f"receipt {sale.receipt_no}: has no line {number} (lines 1 to {len(sale.lines)})")
        line = sale.lines[number - 1]
        qty = left[number - 1] if qty is None else qty
        if not left[number - 1]:
            raise NotRefundable(
                f"receipt {sale.receipt_no} line {number} ({line.name}): already returned by {', '.join(done.receipts)}"
            )
        if qty < 1:
            raise NotRefundable(f"receipt {sale.receipt_no} line {number}: quantity to return must be at least 1")
        if qty > left[number - 1]:
            raise NotRefundable(
                f"receipt {sale.receipt_no} line {number} ({line.name}): {left[number - 1]} of {line.qty} "
                f"left to return, cannot return {qty}"
            )
        wanted[number - 1] = qty
    return wanted


def _rate_back(
    sale: Sale, original: RateTotal, lines_back: int, wanted: list[int], done: Returned, rounding: Rounding
) -> RateTotal:
    """One rate's part of a return, as positive numbers."""
    rate = original.rate
    lines_after = done.rate_lines.get(rate, 0) + lines_back
    # The rate's receipt discount splits between what is back and what is kept by largest
    # remainder: the part back only grows with lines_after and is the whole discount at the end.
    discount_after = allocate(original.discount, [lines_after, original.lines - lines_after])[0]
    discount = max(discount_after - done.rate_discount.get(rate, 0), 0)
    amount = lines_back - discount
    tax_left = original.tax - done.rate_tax.get(rate, 0)
    rate_done = all(
        done.qty.get(i, 0) + wanted[i] == line.qty for i, line in enumerate(sale.lines) if line.rate == rate
    )
    if rate_done:
        tax = tax_left  # the last return at a rate settles its tax exactly
    else:
        tax = min(tax_of(amount, rate, included=sale.prices_include_tax, rounding=rounding), tax_left)
    taxable = amount if sale.prices_include_tax else amount + tax
    return RateTotal(rate, lines_back, discount, taxable, tax)


def _pay_back(sale: Sale, amount: int, done: Returned) -> dict[str, int]:
    """Split `amount` over the tenders: cash, card ... in the sale's order first, points last, each
    at most what it netted on the sale minus what earlier returns paid back through it."""
    net: dict[str, int] = {}
    for payment in sale.payments:
        net[payment.tender] = net.get(payment.tender, 0) + payment.amount
    if sale.change:
        net[CASH] = net.get(CASH, 0) - sale.change
    back = dict.fromkeys(net, 0)
    for tender in [t for t in net if t != POINTS] + [t for t in net if t == POINTS]:
        give = min(amount, max(net[tender] - done.tenders.get(tender, 0), 0))
        back[tender] = give
        amount -= give
    if amount:
        raise ValueError(f"{sale.receipt_no}: earlier refunds paid back more than the sale took")
    return back


def _points_taken_back(sale: Sale, money_back: int, done: Returned) -> int:
    """Earned points follow the money they were earned on (everything but points): the member
    keeps the points of the money still kept, rounded down, so all go back with the last yen."""
    basis = sale.total - sale.points_redeemed
    if not sale.points_earned or basis <= 0:
        return 0
    kept = max(basis - (done.total - done.points_redeemed) - money_back, 0)
    taken_after = sale.points_earned - sale.points_earned * kept // basis
    return max(taken_after - done.points_earned, 0)


def _discount_labels(sale: Sale, before: int, now: int) -> tuple[tuple[str, int], ...]:
    """The receipt discounts a return takes back, filled in receipt order (negated)."""
    after = before + now
    result: list[tuple[str, int]] = []
    for label, amount in sale.receipt_discounts:
        share = min(max(after, 0), amount) - min(max(before, 0), amount)
        before, after = before - amount, after - amount
        if share or not amount:
            result.append((label, -share))
    return tuple(result)


Key = TypeVar("Key")


def _add(totals: dict[Key, int], key: Key, value: int) -> None:
    totals[key] = totals.get(key, 0) + value
