"""What the counter reads: JAN/EAN barcodes, in-store codes, RFID tags and manual SKU entry.

`read_code` turns the text of one scan into a `ScannedCode` telling the engine how to find the
product (the key for `ProductLookup`), plus a price printed in the code and an RFID serial when
there are any. Refusals are `CheckoutRefused` errors with a one-line reason.
"""

from __future__ import annotations

import enum
import string
from collections.abc import Callable
from dataclasses import dataclass

from tenpo.edge.checkout.config import INSTORE_PREFIXES, InStoreLayout
from tenpo.edge.checkout.errors import BadCheckDigit, UnreadableCode

# An SGTIN read at the counter -> (GTIN, serial), or just the GTIN (the EPC then keys the
# serial), or None when the tag is not an SGTIN. Kept a callable so this module stays free of
# the EPC codec (tenpo.shared.epc), which the caller passes in.
EpcResolver = Callable[[str], "tuple[str, str] | str | None"]

GTIN_LENGTHS = frozenset({8, 12, 13, 14})
_HEX = frozenset(string.hexdigits)
# Weight of each body digit, counted from the right: 3, 1, 3, 1 ... (GS1 mod-10).
_WEIGHTS = tuple(3 if i % 2 == 0 else 1 for i in range(17))


class CodeKind(enum.StrEnum):
    GTIN = "gtin"  # source-marked JAN / EAN-13 / EAN-8 / UPC-A / GTIN-14
    INSTORE = "instore"  # in-store code (02, 20-29), price from the product list (PLU)
    INSTORE_PRICE = "instore-price"  # in-store code with the price printed in it
    RFID = "rfid"  # SGTIN read from a tag, one serialised item
    SKU = "sku"  # typed by the clerk as sku:SKU


@dataclass(frozen=True, slots=True)
class ScannedCode:
    raw: str
    kind: CodeKind
    key: str  # GTIN as printed (8, 13 or 14 digits) or the SKU: what ProductLookup receives
    embedded_price: int | None = None
    serial: str | None = None


def gtin_check_digit(body: str) -> int:
    """GS1 mod-10 check digit for the digits before it (any GTIN length)."""
    total = 0
    for weight, char in zip(_WEIGHTS, reversed(body)):
        total += weight * (ord(char) - 48)
    return -total % 10


def is_valid_gtin(code: str) -> bool:
    return (
        len(code) in GTIN_LENGTHS
        and code.isascii()
        and code.isdigit()
        and gtin_check_digit(code[:-1]) == ord(code[-1]) - 48
    )


def with_check_digit(body: str) -> str:
    return body + str(gtin_check_digit(body))


def canonical_gtin(digits: str) -> str:
    """The form a product list uses: EAN-8 as 8 digits, GTIN-12/13 as 13, else 14.

    GTIN-14s with indicator 0 (as SGTIN tags carry them) become the JAN printed on the box;
    six leading zeros mark a padded EAN-8 (GS1 keeps GTIN-13 prefix 00000 for GTIN-8).
    """
    padded = digits.rjust(14, "0")
    if padded.startswith("000000"):
        return padded[6:]
    if padded[0] == "0":
        return padded[1:]
    return padded


def read_code(
    text: str,
    layouts: tuple[InStoreLayout, ...] = (),
    gtin_from_epc: EpcResolver | None = None,
) -> ScannedCode:
    """Classify one scan and check it; raises UnreadableCode or BadCheckDigit."""
    raw = text.strip()
    if raw.lower().startswith("sku:"):
        sku = raw[4:].strip()
        if not sku:
            raise UnreadableCode(raw, "empty SKU")
        return ScannedCode(raw, CodeKind.SKU, sku)
    if raw.isascii() and raw.isdigit() and len(raw) in GTIN_LENGTHS:
        return _read_barcode(raw, layouts)
    if raw.lower().startswith("urn:epc:") or (len(raw) >= 24 and len(raw) % 2 == 0 and set(raw) <= _HEX):
        return _read_epc(raw, gtin_from_epc)
    raise UnreadableCode(raw)


def _read_barcode(raw: str, layouts: tuple[InStoreLayout, ...]) -> ScannedCode:
    expected = gtin_check_digit(raw[:-1])
    if expected != ord(raw[-1]) - 48:
        raise BadCheckDigit(raw, expected)
    key = canonical_gtin(raw)
    if len(key) != 13 or key[:2] not in INSTORE_PREFIXES:
        return ScannedCode(raw, CodeKind.GTIN, key)
    layout = next((lay for lay in layouts if lay.prefix == key[:2]), None)
    if layout is None or layout.price_digits == 0:
        return ScannedCode(raw, CodeKind.INSTORE, key)
    # prefix(2) + item + price + CD: the product list holds the code with the price zeroed.
    price_start = 2 + layout.item_digits
    price = int(key[price_start : price_start + layout.price_digits])
    item_key = with_check_digit(key[:price_start] + "0" * layout.price_digits)
    return ScannedCode(raw, CodeKind.INSTORE_PRICE, item_key, embedded_price=price)


def _read_epc(raw: str, gtin_from_epc: EpcResolver | None) -> ScannedCode:
    if gtin_from_epc is None:
        raise UnreadableCode(raw, "RFID tags cannot be read here (no EPC decoder)")
    try:
        resolved = gtin_from_epc(raw)
    except ValueError:
        resolved = None
    if resolved is None:
        raise UnreadableCode(raw, "not an SGTIN tag")
    gtin, serial = (resolved, raw.upper()) if isinstance(resolved, str) else resolved
    if not (gtin.isascii() and gtin.isdigit() and len(gtin) in GTIN_LENGTHS):
        raise UnreadableCode(raw, f"tag decodes to {gtin!r}, not a GTIN")
    return ScannedCode(raw, CodeKind.RFID, canonical_gtin(gtin), serial=serial)
