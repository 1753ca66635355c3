"""Receipt text: widths on 42- and 32-column paper, invoice fields, Japanese names aligned."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenpo.edge.checkout import (
    CheckoutConfig,
    MemberInfo,
    Payment,
    Product,
    SaleRequest,
    Scan,
    checkout,
    refund,
    render_receipt,
    text_width,
)
from tenpo.edge.checkout.codes import with_check_digit
from tenpo.edge.checkout.receipt import clip


class Catalog:
    def __init__(self, *products: Product) -> None:
        self.by_code = {p.gtin: p for p in products}

    def by_gtin(self, gtin: str) -> Product | None:
        return self.by_code.get(gtin)

    def by_sku(self, sku: str) -> Product | None:
        return None


def product(n: int, name: str, price: int, tax_class: str = "standard") -> Product:
    return Product(f"P{n}", with_check_digit(f"49000000{n:04d}"), name, price, tax_class)


ITEMS = (
    product(1, "おにぎり 鮭", 150, "reduced"),
    product(2, "ｶﾞﾘｶﾞﾘ君 ｿｰﾀﾞ", 70, "reduced"),  # half-width katakana: one column each
    product(3, "Tシャツ M", 1980),
    product(4, "ボールペン 黒 0.5mm 超なめらか書き心地 10本セット", 1100),  # longer than any paper
    product(5, "USB-C cable 2m", 12_800),
)
CONFIG = CheckoutConfig(registration_number="T1234567890123", receipt_footer=("またのご来店を",))
AT = datetime(2025, 4, 1, 10, 5)


def make_sale(config: CheckoutConfig = CONFIG, items=ITEMS, **fields):
    fields.setdefault("payments", (Payment("cash", 20_000),))
    request = SaleRequest("000123", AT, tuple(Scan(p.gtin) for p in items) + (Scan(items[0].gtin),), **fields)
    return checkout(request, Catalog(*items), config)


def item_lines(text: str, items=ITEMS) -> list[str]:
    names = [p.name[:4] for p in items]
    return [line for line in text.splitlines() if any(line.startswith(n) for n in names)]


@pytest.mark.parametrize("columns", [42, 32])
def test_no_line_is_wider_than_the_paper_and_prices_end_at_the_edge(columns: int) -> None:
    text = render_receipt(make_sale(member=MemberInfo("M-001", 500)), CONFIG, store_name="テンポ 渋谷店", columns=columns)
    assert max(text_width(line) for line in text.splitlines()) == columns
    lines = item_lines(text)
    assert len(lines) == len(ITEMS)
    # Every item line fills the paper exactly, so the yen amounts are right-aligned at one column,
    # whatever mix of full-width, half-width kana and ASCII the name has.
    assert [text_width(line) for line in lines] == [columns] * len(ITEMS)
    assert all(line.endswith(("¥300", "¥70", "¥1,980", "¥1,100", "¥12,800")) for line in lines)


def test_known_receipt_at_32_columns() -> None:
    items = (product(1, "おにぎり 鮭", 150, "reduced"), product(3, "Tシャツ M", 1980))
    sale = make_sale(items=items, member=MemberInfo("M-001", 500), redeem_points=100, payments=(Payment("cash", 2500),))
    # 8%: 150 x 2 = 300 -> 300 x 8/108 = 22.2 -> 22; 10%: 1980 x 10/110 = 180
    # total 2280; paid 100 points + 2500 cash -> change 320; points (2280 - 100) // 100 = 21
    expected = """\
         テンポ 渋谷店
    登録番号 T1234567890123
2025-04-01 10:05       No.000123
--------------------------------
おにぎり 鮭        ※        ¥300
  2点 x ¥150
Tシャツ M                 ¥1,980
--------------------------------
小計                      ¥2,280
合計                      ¥2,280
10%対象                   ¥1,980
  内消費税等                ¥180
 8%対象※                    ¥300
  内消費税等                 ¥22
ポイント利用                ¥100
お預り 現金               ¥2,500
お釣り                      ¥320
会員番号 M-001
ご利用ポイント             100pt
今回ポイント                21pt
ポイント残高               421pt
--------------------------------
※は軽減税率対象商品です
         またのご来店を
"""
    assert render_receipt(sale, CONFIG, store_name="テンポ 渋谷店", columns=32) == expected


def test_tax_exclusive_receipt_shows_the_tax_line_before_the_total() -> None:
    config = CheckoutConfig(prices_include_tax=False)
    text = render_receipt(make_sale(config, items=ITEMS[2:3]), config, store_name="S")
    # 外税: make_sale scans the shirt twice: 1980 x 2 = 3960 ex-tax, tax 396, total 4356
    assert "小計(税抜)" in text and "内消費税等" not in text
    lines = text.splitlines()
    tax_at = next(i for i, line in enumerate(lines) if line.startswith("消費税等"))
    total_at = next(i for i, line in enumerate(lines) if line.startswith("合計"))
    assert tax_at < total_at
    assert lines[total_at].endswith("¥4,356")


def test_reduced_rate_note_only_with_reduced_items() -> None:
    assert "軽減税率対象" not in render_receipt(make_sale(items=ITEMS[2:3]), CONFIG, store_name="S")
    assert "※は軽減税率対象商品です" in render_receipt(make_sale(), CONFIG, store_name="S")


def test_no_registration_number_no_line() -> None:
    assert "登録番号" not in render_receipt(make_sale(CheckoutConfig()), CheckoutConfig(), store_name="S")


def test_refund_receipt_is_marked_and_negative() -> None:
    sale = make_sale(items=ITEMS[2:3])
    text = render_receipt(refund(sale, "000124", AT), CONFIG, store_name="S", columns=32)
    assert "【返品】" in text
    assert "No.000123" in text and "No.000124" in text
    assert "-¥3,960" in text


def test_clip_never_splits_a_full_width_character() -> None:
    assert clip("日本語", 5) == "日本 "
    assert text_width(clip("日本語", 5)) == 5
    assert clip("ab", 4) == "ab  "


def test_ambiguous_width_characters_can_count_double() -> None:
    assert text_width("※") == 1
    assert text_width("※", ambiguous_wide=True) == 2


names_st = st.text(
    alphabet=st.sampled_from("あいう漢字カナｶﾅﾞabc 123-※×°Ωé\u3000😀・ー"),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(names=st.lists(names_st, min_size=1, max_size=4), columns=st.sampled_from([32, 42]), wide=st.booleans())
def test_any_names_fit_the_paper(names: list[str], columns: int, wide: bool) -> None:
    items = tuple(product(i, name, 100 * (i + 1), "reduced" if i % 2 else "standard") for i, name in enumerate(names))
    sale = make_sale(items=items, member=MemberInfo("M-1", 0))
    name = "とても長い店名のテンポ 渋谷スクランブル店"
    text = render_receipt(sale, CONFIG, store_name=name, columns=columns, ambiguous_wide=wide)
    assert all(text_width(line, wide) <= columns for line in text.splitlines())
