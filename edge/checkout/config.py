"""The store's checkout rules, read from the `[checkout]` table of the store's TOML config.

Every field has a default, so a store without a `[checkout]` table sells with 内税 prices,
10 % / 8 % rates, tax rounded down once per rate, and 1 point per 100 yen.
"""

from __future__ import annotations

import enum
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenpo.shared.errors import ConfigError


class Rounding(enum.StrEnum):
    """How a fraction of a yen (or of a point) becomes a whole one."""

    DOWN = "round-down"  # 切り捨て, the usual choice and the default
    HALF_UP = "round-half-up"  # 四捨五入
    UP = "round-up"  # 切り上げ

    def divide(self, numerator: int, denominator: int) -> int:
        """numerator / denominator rounded in this mode; negative values round symmetrically."""
        if numerator < 0:
            return -self.divide(-numerator, denominator)
        if self is Rounding.DOWN:
            return numerator // denominator
        if self is Rounding.UP:
            return -(-numerator // denominator)
        return (2 * numerator + denominator) // (2 * denominator)


@dataclass(frozen=True, slots=True)
class InStoreLayout:
    """Digit layout of a 13-digit in-store code: prefix(2) + item + price + check digit.

    price_digits == 0 is a PLU code (price from the product list); otherwise the price in yen
    is printed in the code (fresh food, weighed goods) and item + price digits must be 10.
    """

    prefix: str
    item_digits: int
    price_digits: int


INSTORE_PREFIXES = frozenset({"02", *(str(n) for n in range(20, 30))})
REGISTRATION_NUMBER = re.compile(r"T\d{13}")


@dataclass(frozen=True, slots=True)
class CheckoutConfig:
    prices_include_tax: bool = True
    standard_rate: int = 10
    reduced_rate: int = 8
    tax_rounding: Rounding = Rounding.DOWN
    points_per_unit: int = 1
    points_unit_yen: int = 100
    points_rounding: Rounding = Rounding.DOWN
    # Offline only: the most points one sale may redeem, and one member across all sales of
    # one offline period, so two stores offline at once overspend by at most this much.
    max_redeem_per_sale: int = 3000
    max_redeem_per_member_offline: int = 5000
    registration_number: str | None = None  # 適格請求書発行事業者登録番号, "T" + 13 digits
    receipt_columns: int = 42
    receipt_footer: tuple[str, ...] = ()
    instore_layouts: tuple[InStoreLayout, ...] = field(default=())

    def rate_of(self, tax_class: str) -> int:
        """Percent rate for a product tax class (`standard` or `reduced`)."""
        if tax_class == "standard":
            return self.standard_rate
        if tax_class == "reduced":
            return self.reduced_rate
        raise ConfigError(f"tax_class {tax_class!r}: expected 'standard' or 'reduced'")

    def layout_for(self, prefix: str) -> InStoreLayout | None:
        for layout in self.instore_layouts:
            if layout.prefix == prefix:
                return layout
        return None


def load_checkout_config(path: str | Path) -> CheckoutConfig:
    """Read the `[checkout]` table of a store config file (missing table: all defaults)."""
    try:
        with open(path, "rb") as fh:
            document = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    return parse_checkout_config(document)


def parse_checkout_config(document: Mapping[str, Any]) -> CheckoutConfig:
    """Build a CheckoutConfig from a parsed TOML document; errors name the bad field."""
    table = document.get("checkout", {})
    if not isinstance(table, Mapping):
        raise ConfigError("[checkout] must be a table")
    known = set(CheckoutConfig.__dataclass_fields__) - {"instore_layouts"} | {"instore_codes"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"[checkout] {unknown[0]}: unknown field (known: {', '.join(sorted(known))})")
    d = CheckoutConfig()
    values: dict[str, Any] = {
        "prices_include_tax": _bool(table, "prices_include_tax", d.prices_include_tax),
        "standard_rate": _int(table, "standard_rate", d.standard_rate, low=1, high=100),
        "reduced_rate": _int(table, "reduced_rate", d.reduced_rate, low=0, high=100),
        "tax_rounding": _rounding(table, "tax_rounding", d.tax_rounding),
        "points_per_unit": _int(table, "points_per_unit", d.points_per_unit, low=0),
        "points_unit_yen": _int(table, "points_unit_yen", d.points_unit_yen, low=1),
        "points_rounding": _rounding(table, "points_rounding", d.points_rounding),
        "max_redeem_per_sale": _int(table, "max_redeem_per_sale", d.max_redeem_per_sale, low=0),
        "max_redeem_per_member_offline": _int(
            table, "max_redeem_per_member_offline", d.max_redeem_per_member_offline, low=0
        ),
        "registration_number": _registration(table),
        "receipt_columns": _columns(table),
        "receipt_footer": _footer(table),
        "instore_layouts": _layouts(table.get("instore_codes", [])),
    }
    if values["standard_rate"] == values["reduced_rate"]:
        raise ConfigError("[checkout] reduced_rate: must differ from standard_rate")
    return CheckoutConfig(**values)


def _bool(table: Mapping[str, Any], name: str, default: bool) -> bool:
    value = table.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"[checkout] {name}: expected true or false, got {value!r}")
    return value


def _int(table: Mapping[str, Any], name: str, default: int, *, low: int = 0, high: int | None = None) -> int:
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"[checkout] {name}: expected a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"[checkout] {name}: must be {bound}, got {value}")
    return value


def _rounding(table: Mapping[str, Any], name: str, default: Rounding) -> Rounding:
    value = table.get(name, default.value)
    try:
        return Rounding(value)
    except ValueError:
        choices = ", ".join(r.value for r in Rounding)
        raise ConfigError(f"[checkout] {name}: {value!r} is not one of {choices}") from None


def _registration(table: Mapping[str, Any]) -> str | None:
    value = table.get("registration_number")
    if value is None:
        return None
    if not isinstance(value, str) or not REGISTRATION_NUMBER.fullmatch(value):
        raise ConfigError(f"[checkout] registration_number: expected 'T' and 13 digits, got {value!r}")
    return value


def _columns(table: Mapping[str, Any]) -> int:
    value = table.get("receipt_columns", 42)
    # 42.0 would pass `in (32, 42)` and then break the receipt's `char * columns` at the first print.
    if isinstance(value, bool) or not isinstance(value, int) or value not in (32, 42):
        raise ConfigError(f"[checkout] receipt_columns: expected 42 (80 mm) or 32 (58 mm), got {value!r}")
    return value


def _footer(table: Mapping[str, Any]) -> tuple[str, ...]:
    value = table.get("receipt_footer", [])
    if not isinstance(value, list) or not all(isinstance(line, str) for line in value):
        raise ConfigError("[checkout] receipt_footer: expected a list of strings")
    return tuple(value)


def _layouts(value: Any) -> tuple[InStoreLayout, ...]:
    if not isinstance(value, list):
        raise ConfigError("[checkout] instore_codes: expected an array of tables [[checkout.instore_codes]]")
    layouts: list[InStoreLayout] = []
    for index, entry in enumerate(value):
        where = f"[checkout] instore_codes[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: expected a table")
        extra = sorted(set(entry) - {"prefix", "item_digits", "price_digits"})
        if extra:
            raise ConfigError(f"{where}.{extra[0]}: unknown field (known: prefix, item_digits, price_digits)")
        prefix = entry.get("prefix")
        if prefix not in INSTORE_PREFIXES:
            raise ConfigError(
                f"{where}.prefix: expected a quoted in-store prefix '02' or '20'..'29', got {prefix!r}"
            )
        if any(layout.prefix == prefix for layout in layouts):
            raise ConfigError(f"{where}.prefix: {prefix} is configured twice")
        price_digits = entry.get("price_digits", 0)
        if isinstance(price_digits, bool) or not isinstance(price_digits, int) or not 0 <= price_digits <= 6:
            raise ConfigError(f"{where}.price_digits: expected 0 (PLU) to 6, got {price_digits!r}")
        item_digits = entry.get("item_digits", 10 - price_digits)
        bad_type = isinstance(item_digits, bool) or not isinstance(item_digits, int)
        if bad_type or item_digits + price_digits != 10:
            raise ConfigError(
                f"{where}.item_digits: item_digits + price_digits must be 10 "
                f"(13 = prefix 2 + item + price + check digit 1), got {item_digits!r} + {price_digits}"
            )
        layouts.append(InStoreLayout(prefix, item_digits, price_digits))
    return tuple(layouts)
