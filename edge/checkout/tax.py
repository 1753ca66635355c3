"""Consumption tax under the qualified invoice system: once per rate per receipt.

The engine sums line totals per rate first, takes the receipt discount off each rate's sum, and
only then computes one tax amount per rate (NTA Q&A on インボイス制度: rounding per line and summing
is not allowed). Amounts are integer yen; fractions exist only inside one division.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tenpo.edge.checkout.config import Rounding


@dataclass(frozen=True, slots=True)
class RateTotal:
    """One tax rate's part of a receipt, as the invoice must show it."""

    rate: int  # percent: 10 or 8
    lines: int  # sum of line totals at this rate (price basis: with tax for 内税, without for 外税)
    discount: int  # this rate's share of the receipt discounts
    taxable: int  # 対象額 including tax, after discounts
    tax: int  # 消費税 (内消費税 for 内税 prices)

    @property
    def net(self) -> int:
        """Amount excluding tax."""
        return self.taxable - self.tax


def tax_of(amount: int, rate: int, *, included: bool, rounding: Rounding) -> int:
    """Tax on one rate's total: amount x r/(100+r) when the amount includes tax, else x r/100."""
    return rounding.divide(amount * rate, (100 + rate) if included else 100)


def allocate(amount: int, weights: Sequence[int]) -> list[int]:
    """Split `amount` yen in proportion to non-negative `weights`, summing exactly to `amount`.

    Largest remainder method: each share is rounded down, and the yen left over go one each to
    the largest fractional remainders, earlier weights first on ties.
    """
    whole = sum(weights)
    if whole <= 0:
        if amount:
            raise ValueError("cannot allocate a non-zero amount over zero weights")
        return [0] * len(weights)
    shares = [amount * w // whole for w in weights]
    remainders = [amount * w % whole for w in weights]
    left = amount - sum(shares)
    for index in sorted(range(len(weights)), key=lambda i: -remainders[i])[:left]:
        shares[index] += 1
    return shares


def rate_totals(
    lines_by_rate: Mapping[int, int],
    receipt_discount: int,
    *,
    prices_include_tax: bool,
    rounding: Rounding,
) -> tuple[RateTotal, ...]:
    """Per-rate totals and tax of one receipt, highest rate first.

    The receipt discount is spread over the rates in proportion to their line totals, so each
    rate's tax is computed on what the customer really pays at that rate.
    """
    rates = sorted(lines_by_rate, reverse=True)
    bases = [lines_by_rate[r] for r in rates]
    shares = allocate(receipt_discount, bases)
    totals: list[RateTotal] = []
    for rate, base, share in zip(rates, bases, shares):
        after = base - share
        tax = tax_of(after, rate, included=prices_include_tax, rounding=rounding)
        taxable = after if prices_include_tax else after + tax
        totals.append(RateTotal(rate, base, share, taxable, tax))
    return tuple(totals)
