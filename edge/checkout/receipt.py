"""Text receipts for 80 mm (42 columns) and 58 mm (32 columns) printers.

A simplified qualified invoice (適格簡易請求書): issuer and registration number, date, items with
reduced-rate items marked ※, and per rate the taxable amount and the tax. Full-width characters
(East Asian Width W or F) take two columns; printers that also print ambiguous-width characters
(※, ×, Greek...) double-width get `ambiguous_wide=True`.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from tenpo.edge.checkout.config import CheckoutConfig
from tenpo.edge.checkout.errors import yen
from tenpo.edge.checkout.model import Sale, SaleKind, SaleLine

REDUCED_MARK = "※"
AMOUNT_WIDTH = 11  # "-¥1,234,567"
TENDER_NAMES = {"cash": "現金", "points": "ポイント", "card": "クレジット", "qr": "QR決済", "emoney": "電子マネー"}


@lru_cache(maxsize=4096)
def char_width(char: str, ambiguous_wide: bool = False) -> int:
    if unicodedata.combining(char):
        return 0
    kind = unicodedata.east_asian_width(char)
    return 2 if kind in ("W", "F") or (ambiguous_wide and kind == "A") else 1


def text_width(text: str, ambiguous_wide: bool = False) -> int:
    return sum(char_width(c, ambiguous_wide) for c in text)


def clip(text: str, width: int, ambiguous_wide: bool = False) -> str:
    """Cut `text` to at most `width` columns and pad it with spaces to exactly `width`."""
    used = 0
    kept: list[str] = []
    for char in text:
        w = char_width(char, ambiguous_wide)
        if used + w > width:
            break
        kept.append(char)
        used += w
    return "".join(kept) + " " * (width - used)


class _Paper:
    def __init__(self, columns: int, ambiguous_wide: bool) -> None:
        self.columns = columns
        self.wide = ambiguous_wide
        self.lines: list[str] = []

    def width(self, text: str) -> int:
        return text_width(text, self.wide)

    def add(self, text: str = "") -> None:
        self.lines.append(clip(text, self.columns, self.wide).rstrip())

    def center(self, text: str) -> None:
        pad = max((self.columns - self.width(text)) // 2, 0)
        self.add(" " * pad + text)

    def pair(self, left: str, right: str) -> None:
        """`left` and `right` on one line, right flush with the paper edge."""
        room = self.columns - self.width(right) - 1
        self.lines.append(clip(left, room, self.wide) + " " + right)

    def rule(self, char: str = "-") -> None:
        self.lines.append(char * self.columns)


def render_receipt(
    sale: Sale,
    config: CheckoutConfig,
    *,
    store_name: str,
    columns: int | None = None,
    ambiguous_wide: bool = False,
    clerk: str | None = None,
    offline: bool = False,
) -> str:
    """The receipt text, lines separated by newlines; no line is wider than the paper.

    ``clerk``: who rang it up (担当); ``offline``: printed while HQ was unreachable, so the member's
    points balance on it may not yet include other stores' entries."""
    paper = _Paper(columns or config.receipt_columns, ambiguous_wide)
    refund = sale.kind is SaleKind.REFUND
    paper.center(store_name)
    if config.registration_number:
        paper.center(f"登録番号 {config.registration_number}")
    if refund:
        paper.center("【返品】")
    paper.pair(sale.at.strftime("%Y-%m-%d %H:%M"), f"No.{sale.receipt_no}")
    if sale.refund_of:
        paper.pair("元レシート", f"No.{sale.refund_of}")
    if clerk:
        paper.add(f"担当 {clerk}")
    if offline:
        paper.add("オフライン取引 (offline: sent to HQ later)")
    paper.rule()
    for line in sale.lines:
        _item(paper, line)
    paper.rule()
    _totals(paper, sale)
    _payments(paper, sale)
    _member(paper, sale)
    paper.rule()
    if any(line.tax_class == "reduced" for line in sale.lines):
        paper.add(f"{REDUCED_MARK}は軽減税率対象商品です")
    for text in config.receipt_footer:
        paper.center(text)
    return "\n".join(paper.lines) + "\n"


def _item(paper: _Paper, line: SaleLine) -> None:
    mark = REDUCED_MARK if line.tax_class == "reduced" else ""
    amount = yen(line.gross)
    # name | mark | amount: the mark column is two wide so marked and unmarked names align.
    room = paper.columns - AMOUNT_WIDTH - 3
    paper.lines.append(
        clip(line.name, room, paper.wide) + " " + clip(mark, 2, paper.wide) + amount.rjust(AMOUNT_WIDTH)
    )
    if abs(line.qty) != 1:
        paper.add(f"  {line.qty}点 x {yen(line.unit_price)}")
    if line.discount:
        paper.pair("  値引", yen(-line.discount))


def _totals(paper: _Paper, sale: Sale) -> None:
    paper.pair("小計" if sale.prices_include_tax else "小計(税抜)", yen(sale.subtotal))
    for label, amount in sale.receipt_discounts:
        paper.pair(label, yen(-amount))
    if not sale.prices_include_tax:
        paper.pair("消費税等", yen(sale.tax))
    paper.pair("合計", yen(sale.total))
    tax_label = "内消費税等" if sale.prices_include_tax else "消費税等"
    reduced_rates = {line.rate for line in sale.lines if line.tax_class == "reduced"}
    for rate in sale.rates:
        mark = REDUCED_MARK if rate.rate in reduced_rates else ""
        paper.pair(f"{rate.rate:>2}%対象{mark}", yen(rate.taxable))
        paper.pair(f"  {tax_label}", yen(rate.tax))


def _payments(paper: _Paper, sale: Sale) -> None:
    label = "ご返金" if sale.kind is SaleKind.REFUND else "お預り"
    for payment in sale.payments:
        name = TENDER_NAMES.get(payment.tender, payment.tender)
        paper.pair(f"{label} {name}" if payment.tender != "points" else f"{name}利用", yen(payment.amount))
    if sale.change:
        paper.pair("お釣り", yen(sale.change))


def _member(paper: _Paper, sale: Sale) -> None:
    if not sale.member_id:
        return
    paper.add(f"会員番号 {sale.member_id}")
    if sale.points_redeemed:
        label = "ご利用ポイント" if sale.points_redeemed > 0 else "返却ポイント"
        paper.pair(label, f"{abs(sale.points_redeemed):,}pt")
    paper.pair("今回ポイント" if sale.points_earned >= 0 else "取消ポイント", f"{sale.points_earned:,}pt")
    if sale.points_balance_after is not None:
        paper.pair("ポイント残高", f"{sale.points_balance_after:,}pt")
