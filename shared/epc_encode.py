"""GS1 EPC Tag Data Standard: encoding SGTIN-96 and SSCC-96, and GS1 check digits.

What a store writes to a tag or checks by hand; ``tenpo.shared.epc`` (which re-exports all of this)
decodes. Layouts: TDS 1.13 §14 (tables in ``epc_tables``); check digits §7.
"""

from __future__ import annotations

from typing import Final

from tenpo.shared.epc_tables import SGTIN_PARTITIONS, SSCC_PARTITIONS, Partition, weighted_check_digit

__all__ = [
    "DEFAULT_COMPANY_PREFIX_DIGITS",
    "EpcEncodeError",
    "encode_sgtin96",
    "encode_sscc96",
    "gs1_check_digit",
    "gtin_check_digit",
]

# Japanese JAN company prefixes (45/49) were issued with 7 digits before 2001 and 9 after; 7 is the
# most common length on goods still sold, so it is the default when a caller does not know it.
DEFAULT_COMPANY_PREFIX_DIGITS: Final = 7


class EpcEncodeError(ValueError):
    """A GTIN, SSCC, serial, filter or company prefix length cannot be encoded."""


# --------------------------------------------------------------------------------------------------
# Check digits (TDS §7): weights 3,1,3,... starting from the digit next to the check digit.


def gs1_check_digit(body: str) -> int:
    """Check digit for a GS1 key given without its check digit (GTIN, SSCC, GLN, GRAI)."""
    raw = body.encode("ascii", "replace")
    if not raw.isdigit():
        raise EpcEncodeError(f"not all digits: {body!r}")
    return weighted_check_digit(raw)


def gtin_check_digit(gtin_body: str) -> int:
    """Check digit of a GTIN given without it (7, 11, 12 or 13 digits)."""
    return gs1_check_digit(gtin_body)


def _digits(value: str, what: str, lengths: tuple[int, ...]) -> str:
    text = value.strip()
    if not text.isdigit() or not text.isascii() or len(text) not in lengths:
        allowed = ", ".join(str(n) for n in lengths)
        raise EpcEncodeError(f"{what} must be {allowed} digits, got {value!r}")
    return text


def _partition_for(table: tuple[Partition, ...], company_digits: int) -> tuple[int, Partition]:
    for partition, row in enumerate(table):
        if row[1] == company_digits:
            return partition, row
    raise EpcEncodeError(f"company prefix must be 6 to 12 digits, got {company_digits}")


def _check_filter(filter_value: int) -> None:
    if not 0 <= filter_value <= 7:
        raise EpcEncodeError(f"filter must be 0..7, got {filter_value}")


def encode_sgtin96(
    gtin: str,
    serial: int,
    filter: int = 1,  # noqa: A002 - the GS1 name for the field
    company_prefix_digits: int | None = None,
) -> str:
    """SGTIN-96 as upper-case hex from a GTIN (8, 12, 13 or 14 digits, check digit included).

    ``company_prefix_digits`` is the length of the GS1 company prefix inside the GTIN; it is not
    recoverable from the GTIN itself, so it defaults to ``DEFAULT_COMPANY_PREFIX_DIGITS`` (7).
    Raises EpcEncodeError on a bad check digit, serial (0 .. 2**38-1) or filter.
    """
    gtin14 = _digits(gtin, "GTIN", (8, 12, 13, 14)).zfill(14)
    expected = gs1_check_digit(gtin14[:13])
    if int(gtin14[13]) != expected:
        raise EpcEncodeError(f"GTIN {gtin} has check digit {gtin14[13]}, expected {expected}")
    if not 0 <= serial < 1 << 38:
        raise EpcEncodeError(f"SGTIN-96 serial must be 0 .. {(1 << 38) - 1}, got {serial}")
    _check_filter(filter)
    cdigits = DEFAULT_COMPANY_PREFIX_DIGITS if company_prefix_digits is None else company_prefix_digits
    partition, (cbits, _, rbits, _) = _partition_for(SGTIN_PARTITIONS, cdigits)
    company = int(gtin14[1 : 1 + cdigits])
    item = int(gtin14[0] + gtin14[1 + cdigits : 13])
    value = (0x30 << 88) | (filter << 85) | (partition << 82)
    value |= (company << (38 + rbits)) | (item << 38) | serial
    return f"{value:024X}"


def encode_sscc96(
    sscc: str,
    filter: int = 0,  # noqa: A002
    company_prefix_digits: int | None = None,
) -> str:
    """SSCC-96 as upper-case hex from an 18-digit SSCC (check digit included)."""
    digits = _digits(sscc, "SSCC", (18,))
    expected = gs1_check_digit(digits[:17])
    if int(digits[17]) != expected:
        raise EpcEncodeError(f"SSCC {sscc} has check digit {digits[17]}, expected {expected}")
    _check_filter(filter)
    cdigits = DEFAULT_COMPANY_PREFIX_DIGITS if company_prefix_digits is None else company_prefix_digits
    partition, (cbits, _, rbits, _) = _partition_for(SSCC_PARTITIONS, cdigits)
    company = int(digits[1 : 1 + cdigits])
    ref = int(digits[0] + digits[1 + cdigits : 17])
    value = (0x31 << 88) | (filter << 85) | (partition << 82) | (company << (24 + rbits)) | (ref << 24)
    return f"{value:024X}"
