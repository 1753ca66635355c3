"""Tax once per rate per receipt, rounding modes, receipt-discount allocation, and the config."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenpo.edge.checkout import (
    CheckoutConfig,
    Discount,
    Payment,
    Product,
    Rounding,
    SaleRequest,
    Scan,
    checkout,
    load_checkout_config,
    parse_checkout_config,
)
from tenpo.edge.checkout.tax import allocate, rate_totals, tax_of
from tenpo.shared.errors import ConfigError

DOWN, HALF_UP, UP = Rounding.DOWN, Rounding.HALF_UP, Rounding.UP


# (amount at one rate, rate, price includes tax?, expected tax for round-down, round-half-up, round-up)
@pytest.mark.parametrize(
    ("amount", "rate", "included", "down", "half_up", "up"),
    [
        (1000, 10, True, 90, 91, 91),  # 1000 x 10/110 = 90.909...
        (1000, 8, True, 74, 74, 75),  # 1000 x 8/108 = 74.074...
        (135, 8, True, 10, 10, 10),  # 135 x 8/108 = 10 exactly
        (55, 10, True, 5, 5, 5),  # 55 x 10/110 = 5 exactly
        (165, 10, True, 15, 15, 15),  # 165 x 10/110 = 15 exactly
        (1, 10, True, 0, 0, 1),  # 1 x 10/110 = 0.0909
        (105, 10, False, 10, 11, 11),  # 105 x 10/100 = 10.5: half rounds up
        (315, 10, False, 31, 32, 32),  # 31.5
        (131, 8, False, 10, 10, 11),  # 131 x 8/100 = 10.48
        (1306, 8, False, 104, 104, 105),  # 104.48
        (1319, 8, False, 105, 106, 106),  # 105.52
        (0, 10, True, 0, 0, 0),
    ],
)
def test_tax_per_rounding_mode(amount: int, rate: int, included: bool, down: int, half_up: int, up: int) -> None:
    assert tax_of(amount, rate, included=included, rounding=DOWN) == down
    assert tax_of(amount, rate, included=included, rounding=HALF_UP) == half_up
    assert tax_of(amount, rate, included=included, rounding=UP) == up


class Catalog:
    def __init__(self, *products: Product) -> None:
        self.by_code = {p.gtin: p for p in products}
        self.by_id = {p.sku: p for p in products}

    def by_gtin(self, gtin: str) -> Product | None:
        return self.by_code.get(gtin)

    def by_sku(self, sku: str) -> Product | None:
        return self.by_id.get(sku)


BENTO = Product("BENTO", "4901234567894", "幕の内弁当", 540, "reduced")
TEA = Product("TEA", "4900000000016", "緑茶 500ml", 150, "reduced")
SOAP = Product("SOAP", "4900000000023", "台所用洗剤", 398, "standard")
PEN = Product("PEN", "4900000000030", "ボールペン", 105, "standard")
CATALOG = Catalog(BENTO, TEA, SOAP, PEN)
BASKET = (Scan(BENTO.gtin), Scan(TEA.gtin), Scan(TEA.gtin), Scan(SOAP.gtin))
AT = datetime(2025, 4, 1, 10, 0)


def sell(config: CheckoutConfig, scans=BASKET, discounts=()) -> dict[int, tuple[int, int]]:
    sale = checkout(
        SaleRequest("1", AT, scans, payments=(Payment("cash", 100_000),), receipt_discounts=discounts),
        CATALOG,
        config,
    )
    return {r.rate: (r.taxable, r.tax) for r in sale.rates} | {0: (sale.total, sale.tax)}


# Whole receipts, worked by hand. Basket: 弁当 540 (8%), お茶 150 x 2 (8%), 洗剤 398 (10%).
# Result: {rate: (taxable incl. tax, tax), 0: (total, total tax)}
RECEIPTS = [
    # 内税, round-down: 8% 540+300 = 840 -> 840x8/108 = 62.22 -> 62; 10% 398x10/110 = 36.18 -> 36
    ("in-down", True, DOWN, (), {8: (840, 62), 10: (398, 36), 0: (1238, 98)}),
    # 内税, round-half-up: 62.22 -> 62, 36.18 -> 36
    ("in-half", True, HALF_UP, (), {8: (840, 62), 10: (398, 36), 0: (1238, 98)}),
    # 内税, round-up: 63 and 37
    ("in-up", True, UP, (), {8: (840, 63), 10: (398, 37), 0: (1238, 100)}),
    # 外税, round-down: 8% 840x0.08 = 67.2 -> 67, taxable 907; 10% 398x0.1 = 39.8 -> 39, taxable 437
    ("ex-down", False, DOWN, (), {8: (907, 67), 10: (437, 39), 0: (1344, 106)}),
    # 外税, round-half-up: 67.2 -> 67, 39.8 -> 40
    ("ex-half", False, HALF_UP, (), {8: (907, 67), 10: (438, 40), 0: (1345, 107)}),
    # 外税, round-up: 68 and 40
    ("ex-up", False, UP, (), {8: (908, 68), 10: (438, 40), 0: (1346, 108)}),
    # 内税, round-down, ¥100 coupon over subtotal 1238, split by rate in proportion:
    #   10%: 100x398/1238 = 32.15 -> 32 (remainder 184); 8%: 100x840/1238 = 67.85 -> 67 (remainder 1054)
    #   1 yen left goes to the larger remainder (8%): 68.
    #   10%: 398-32 = 366 -> 366x10/110 = 33.27 -> 33; 8%: 840-68 = 772 -> 772x8/108 = 57.18 -> 57
    ("in-coupon", True, DOWN, (Discount.parse("100"),), {8: (772, 57), 10: (366, 33), 0: (1138, 90)}),
    # 外税, round-down, 10% off the receipt: 1238 x 10% = 123.8 -> 123 off.
    #   10%: 123x398/1238 = 39.54 -> 39 (rem 672); 8%: 123x840/1238 = 83.46 -> 83 (rem 566); +1 to 10%: 40
    #   10%: 398-40 = 358 -> 35.8 -> 35, taxable 393; 8%: 840-83 = 757 -> 60.56 -> 60, taxable 817
    ("ex-percent", False, DOWN, (Discount.parse("10%"),), {8: (817, 60), 10: (393, 35), 0: (1210, 95)}),
]


@pytest.mark.parametrize(("name", "included", "rounding", "discounts", "expected"), RECEIPTS, ids=[r[0] for r in RECEIPTS])
def test_hand_computed_receipts(name, included, rounding, discounts, expected) -> None:
    config = CheckoutConfig(prices_include_tax=included, tax_rounding=rounding)
    assert sell(config, discounts=discounts) == expected


def test_tax_is_rounded_once_per_rate_not_per_line() -> None:
    # NTA Q&A example (commerce.md): three ¥105 items at 10 % 外税, rounded down.
    # Per line 10.5 -> 10, x3 = 30 would be wrong; per rate 315 x 0.1 = 31.5 -> 31.
    scans = (Scan(PEN.gtin), Scan("sku:PEN"), Scan(PEN.gtin, discount=None))
    result = sell(CheckoutConfig(prices_include_tax=False), scans=scans)
    assert result[10] == (346, 31)


def test_rates_present_only() -> None:
    result = sell(CheckoutConfig(), scans=(Scan(SOAP.gtin),))
    assert set(result) == {10, 0}


@given(st.integers(0, 10_000), st.lists(st.integers(0, 1_000_000), min_size=1, max_size=4))
def test_allocation_sums_exactly_and_stays_proportional(amount: int, weights: list[int]) -> None:
    if sum(weights) == 0:
        amount = 0
    shares = allocate(amount, weights)
    assert sum(shares) == amount
    for share, weight in zip(shares, weights):
        exact = amount * weight / sum(weights) if sum(weights) else 0
        assert exact - 1 < share < exact + 1


def test_rate_totals_put_highest_rate_first() -> None:
    totals = rate_totals({8: 100, 10: 100}, 0, prices_include_tax=True, rounding=DOWN)
    assert [t.rate for t in totals] == [10, 8]


# --- config -------------------------------------------------------------------------------


def test_defaults_match_the_issue() -> None:
    config = parse_checkout_config({})
    assert config == CheckoutConfig()
    assert config.prices_include_tax is True
    assert (config.rate_of("standard"), config.rate_of("reduced")) == (10, 8)
    assert config.tax_rounding is Rounding.DOWN


def test_full_table_from_toml(tmp_path) -> None:
    path = tmp_path / "store.toml"
    path.write_text(
        """
[store]
id = "s001"

[checkout]
prices_include_tax = false
tax_rounding = "round-half-up"
points_per_unit = 1
points_unit_yen = 200
points_rounding = "round-down"
max_redeem_per_sale = 1000
max_redeem_per_member_offline = 2000
registration_number = "T1234567890123"
receipt_columns = 32
receipt_footer = ["またのご来店をお待ちしております"]

[[checkout.instore_codes]]
prefix = "21"
item_digits = 5
price_digits = 5

[[checkout.instore_codes]]
prefix = "20"
""",
        encoding="utf-8",
    )
    config = load_checkout_config(path)
    assert config.prices_include_tax is False
    assert config.tax_rounding is Rounding.HALF_UP
    assert config.points_unit_yen == 200
    assert config.registration_number == "T1234567890123"
    assert config.receipt_columns == 32
    assert config.layout_for("21").price_digits == 5
    assert config.layout_for("20").item_digits == 10  # PLU: the whole code is the item


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"tax_rounding": "round-nearest"}, "[checkout] tax_rounding: 'round-nearest' is not one of round-down"),
        ({"prices_include_tax": "yes"}, "[checkout] prices_include_tax: expected true or false"),
        ({"points_unit_yen": 0}, "[checkout] points_unit_yen: must be at least 1"),
        ({"max_redeem_per_sale": 1.5}, "[checkout] max_redeem_per_sale: expected a whole number"),
        ({"registration_number": "1234567890123"}, "[checkout] registration_number: expected 'T' and 13 digits"),
        ({"receipt_columns": 40}, "[checkout] receipt_columns: expected 42 (80 mm) or 32 (58 mm)"),
        ({"receipt_columns": 42.0}, "[checkout] receipt_columns: expected 42 (80 mm) or 32 (58 mm)"),
        ({"rounding": "round-down"}, "[checkout] rounding: unknown field"),
        ({"reduced_rate": 10}, "[checkout] reduced_rate: must differ"),
        ({"instore_codes": [{"prefix": 21}]}, "[checkout] instore_codes[0].prefix: expected a quoted in-store prefix"),
        ({"instore_codes": [{"prefix": "45"}]}, "instore_codes[0].prefix"),
        ({"instore_codes": [{"prefix": "21", "item_digits": 4, "price_digits": 5}]}, "instore_codes[0].item_digits"),
        ({"instore_codes": [{"prefix": "21"}, {"prefix": "21"}]}, "instore_codes[1].prefix: 21 is configured twice"),
    ],
)
def test_bad_fields_are_named(table: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_checkout_config({"checkout": table})
    assert message in str(caught.value)


def test_unreadable_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_checkout_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[checkout\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_checkout_config(bad)
