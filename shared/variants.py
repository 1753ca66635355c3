"""Product variants: a style (品番) sold in colours and sizes, each variant its own SKU.

A clerk asked for "the same shirt in M" searches one SKU and sees every colour and size of its style,
here and at the other stores, in the order a shelf is laid out (XS, S, M, L, XL; 22.5, 23.0 cm; ...).
Pure rules only: the product import checks the fields with `clean_variant`, the clerk terminal orders
rows with `size_key` and labels them with `variant_label`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_STYLE = 32
MAX_ATTRIBUTE = 32

# Letter sizes as Japanese and Western tags print them, smallest first; "F"/"FREE" (one size) sorts last.
_LETTER_SIZES = ("XXXS", "XXS", "XS", "S", "M", "L", "XL", "XXL", "XXXL", "4XL", "5XL")
_ALIASES = {"SS": "XS", "LL": "XL", "3L": "XXL", "4L": "XXXL", "2XL": "XXL", "3XL": "XXXL", "O": "XL"}
_ONE_SIZE = frozenset({"F", "FREE", "ONESIZE", "ONE SIZE", "OS", "フリー"})
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?)\s*(cm|mm|号|インチ|inch|in)?$", re.IGNORECASE)
_STYLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")


class VariantError(ValueError):
    """A variant field that cannot be stored as given (the message names the field)."""


@dataclass(frozen=True, slots=True)
class Variant:
    style: str | None = None
    colour: str | None = None
    size: str | None = None


def _text(value: str | None, field: str, limit: int) -> str | None:
    if value is None:
        return None
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        return None
    if len(text) > limit:
        raise VariantError(f"{field} is longer than {limit} characters")
    if any(unicodedata.category(ch)[0] == "C" for ch in text):
        raise VariantError(f"{field} holds control characters")
    return text


def clean_variant(style: str | None, colour: str | None, size: str | None) -> Variant:
    """The variant fields of one product row, NFKC-normalised (全角 Ｍ is M); a colour or size needs a style."""
    clean_style = _text(style, "style", MAX_STYLE)
    if clean_style is not None and not _STYLE.match(clean_style):
        raise VariantError(f"style {clean_style!r}: letters, digits and . _ - / only")
    clean_colour = _text(colour, "colour", MAX_ATTRIBUTE)
    clean_size = _text(size, "size", MAX_ATTRIBUTE)
    if clean_style is None and (clean_colour or clean_size):
        raise VariantError("colour and size need a style (the 品番 the variants share)")
    return Variant(clean_style, clean_colour, clean_size.upper() if clean_size and clean_size.isascii() else clean_size)


def size_key(size: str | None) -> tuple[int, float, str]:
    """Sort key laying sizes out as on a shelf: letter sizes in order, then numbers, then others, one size last."""
    if not size:
        return (4, 0.0, "")
    text = unicodedata.normalize("NFKC", size).strip().upper()
    text = _ALIASES.get(text, text)
    if text in _LETTER_SIZES:
        return (0, float(_LETTER_SIZES.index(text)), text)
    number = _NUMBER.match(text.lower())
    if number:
        return (1, float(number.group(1)), text)
    if text in _ONE_SIZE:
        return (3, 0.0, text)
    return (2, 0.0, text)


def variant_label(colour: str | None, size: str | None) -> str:
    """What the clerk reads in the variant column: "ネイビー · M", "M", "ネイビー" or ""."""
    return " · ".join(part for part in (colour, size) if part)
