"""GS1 EPC Tag Data Standard codec for the 96-bit schemes a store meets on its dock door.

Decodes SGTIN-96, SSCC-96, SGLN-96, GRAI-96 and GIAI-96 (every partition, any filter value, check
digits recomputed) and encodes SGTIN-96 and SSCC-96. Anything else, such as the ``E2...`` chip-serial
EPCs many cheap tags ship with, decodes to scheme ``"unknown"`` with a reason instead of failing.

Layouts: GS1 EPC TDS 1.13 §14 (partition tables and check-digit arithmetic in ``epc_tables``); URIs: §7
and §12.
Everything here is pure; ``decode_epc`` never raises.
"""

from __future__ import annotations

from typing import Final

import msgspec

from tenpo.shared.epc_tables import (
    CHECK_DIGIT,
    FILTER_MEANINGS,
    GIAI_PARTITIONS,
    GRAI_PARTITIONS,
    MILLION,
    OTHER_HEADERS,
    POW10,
    SGLN_PARTITIONS,
    SGTIN_PARTITIONS,
    SSCC_PARTITIONS,
    WEIGHTED,
    Partition,
    layouts,
    weighted_check_digit,
)

__all__ = [
    "DEFAULT_COMPANY_PREFIX_DIGITS",
    "DecodedEpc",
    "EpcEncodeError",
    "decode_epc",
    "encode_sgtin96",
    "encode_sscc96",
    "filter_meaning",
    "gs1_check_digit",
    "gtin_check_digit",
]

# Japanese JAN company prefixes (45/49) were issued with 7 digits before 2001 and 9 after; 7 is the
# most common length on goods still sold, so it is the default when a caller does not know it.
DEFAULT_COMPANY_PREFIX_DIGITS: Final = 7

UNKNOWN: Final = "unknown"


class EpcEncodeError(ValueError):
    """A GTIN, SSCC, serial, filter or company prefix length cannot be encoded."""


class DecodedEpc(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One EPC read from a tag, decoded. Fields that do not apply to the scheme are None."""

    epc: str  # upper-case hex as read
    scheme: str  # "sgtin-96", "sscc-96", "sgln-96", "grai-96", "giai-96" or "unknown"
    tag_uri: str | None = None  # urn:epc:tag:sgtin-96:1.0614141.812345.6789
    pure_identity: str | None = None  # urn:epc:id:sgtin:0614141.812345.6789
    filter: int | None = None
    company_prefix: str | None = None
    gtin: str | None = None  # SGTIN: 14 digits with check digit
    serial: str | None = None  # SGTIN and GRAI serial, printed without leading zeros
    sscc: str | None = None  # SSCC: 18 digits with check digit
    gln: str | None = None  # SGLN: 13 digits with check digit
    extension: str | None = None  # SGLN extension ("0" = plain GLN)
    grai: str | None = None  # GRAI element string value: 0 + 12 digits + check + serial
    asset_type: str | None = None  # GRAI asset type (may be empty in partition 0)
    giai: str | None = None  # GIAI element string value: company prefix + asset reference
    reason: str | None = None  # why the scheme is "unknown"

    @property
    def known(self) -> bool:
        return self.scheme != UNKNOWN

    def to_dict(self) -> dict[str, object]:
        """The fields that apply to this scheme (None left out), for JSON output."""
        fields: dict[str, object] = msgspec.to_builtins(self)
        return fields


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


def filter_meaning(scheme: str, filter_value: int) -> str:
    """Human meaning of a filter value for a scheme ("" when unknown)."""
    meanings = FILTER_MEANINGS.get(scheme)
    if meanings is None or not 0 <= filter_value < 8:
        return ""
    return meanings[filter_value]


_BITS_96: Final = 96


def _unknown(epc: str, reason: str) -> DecodedEpc:
    return DecodedEpc(epc=epc, scheme=UNKNOWN, reason=reason)


# --------------------------------------------------------------------------------------------------
# Decoding. Each scheme decoder takes the 96-bit value and returns a DecodedEpc or a failure reason
# (SGTIN, the hot one, wraps its failures itself). Tables and check-digit arithmetic: epc_tables.

# SGTIN rows by the 14 bits above company and item (header, filter, partition), with the filter
# and the tag URI prefix in front; partition 7 has none.
_SGTIN_ROWS: Final[dict[int, tuple[int, str, int, int, int, int, int, int, int, int, int]]] = {
    (0x30 << 6) | (filt << 3) | partition: (filt, f"urn:epc:tag:sgtin-96:{filt}.", *layout)
    for filt in range(8)
    for partition, layout in enumerate(layouts(SGTIN_PARTITIONS))
    if layout is not None
}
_SSCC_LAYOUT: Final = layouts(SSCC_PARTITIONS)

# SGTIN-96 is the item-level tag: a delivery carries many serials of few GTINs, so everything above
# the serial (header, filter, partition, company prefix, item reference) is decoded once and reused.
# Keeping a head costs more than decoding it once (the strings stay allocated), so a head is kept
# only when seen twice: _SEEN remembers one byte of the head last seen in each of its slots.
_SgtinHead = tuple[int, str, str, str, str]  # filter, company prefix, GTIN, tag and id URI prefixes
_SGTIN_HEADS: dict[int, _SgtinHead] = {}
_SGTIN_HEADS_MAX: Final = 1 << 16
_SEEN: Final = bytearray(1 << 16)


def _reset_sgtin_cache() -> None:
    """Forget every decoded head (benchmarks start cold with it)."""
    _SGTIN_HEADS.clear()
    _SEEN[:] = bytes(len(_SEEN))


def _decode_sgtin(epc: str, value: int) -> DecodedEpc:
    serial = str(value & 0x3FFFFFFFFF)
    head = _SGTIN_HEADS.get(value >> 38)
    if head is None:
        return _decode_new_sgtin(epc, value >> 38, serial)
    filt, c, gtin, tag_prefix, id_prefix = head
    return DecodedEpc(epc, "sgtin-96", tag_prefix + serial, id_prefix + serial, filt, c, gtin, serial)


def _decode_new_sgtin(epc: str, top: int, serial: str) -> DecodedEpc:
    """Decode an SGTIN-96 whose 58 bits above the serial (``top``) are not cached."""
    row = _SGTIN_ROWS.get(top >> 44)
    if row is None:
        return _unknown(epc, "sgtin-96: partition 7 is invalid")
    filt, tag_uri_prefix, rbits, cmask, climit, rmask, rlimit, cdigits, rdigits, scale, split = row
    company = (top >> rbits) & cmask
    item = top & rmask
    if company >= climit or item >= rlimit:
        return _unknown(epc, "sgtin-96: company prefix or item reference has too many digits")
    # GTIN digits 2..13 are company * scale + item % scale; the table takes them as two 6-digit
    # halves, computed from the small parts so no intermediate outgrows a machine word.
    weighted = WEIGHTED
    check = CHECK_DIGIT[3 * (item // scale) + weighted[company // split]
                         + weighted[company % split * scale + item % scale]]
    c = str(company).zfill(cdigits)
    i = str(item).zfill(rdigits)
    gtin = f"{i[0]}{c}{i[1:]}{check}"
    slot = top & 0xFFFF
    if _SEEN[slot] != company & 0xFF:  # first sight: decode without keeping anything
        _SEEN[slot] = company & 0xFF
        return DecodedEpc(epc, "sgtin-96", f"{tag_uri_prefix}{c}.{i}.{serial}",
                          f"urn:epc:id:sgtin:{c}.{i}.{serial}", filt, c, gtin, serial)
    tag_prefix = f"{tag_uri_prefix}{c}.{i}."
    id_prefix = f"urn:epc:id:sgtin:{c}.{i}."
    if len(_SGTIN_HEADS) >= _SGTIN_HEADS_MAX:
        _SGTIN_HEADS.clear()
    _SGTIN_HEADS[top] = (filt, c, gtin, tag_prefix, id_prefix)
    return DecodedEpc(epc, "sgtin-96", tag_prefix + serial, id_prefix + serial, filt, c, gtin, serial)


def _decode_sscc(epc: str, value: int) -> DecodedEpc | str:
    # Every pallet has its own serial reference, so unlike SGTIN nothing here is worth caching.
    if value & 0xFFFFFF:
        return "sscc-96 reserved bits are not zero"
    layout = _SSCC_LAYOUT[(value >> 82) & 7]
    if layout is None:
        return "partition 7 is invalid"
    rbits, cmask, climit, rmask, rlimit, cdigits, rdigits, scale, _ = layout
    company = (value >> (24 + rbits)) & cmask
    ref = (value >> 24) & rmask
    if company >= climit or ref >= rlimit:
        return "company prefix or serial reference has too many digits"
    high, low = divmod(company * scale + ref % scale, MILLION)  # SSCC digits 2..17, split 10+6
    weighted = WEIGHTED
    check = CHECK_DIGIT[3 * (ref // scale) + weighted[high // MILLION] + weighted[high % MILLION]
                         + weighted[low]]
    c = str(company).zfill(cdigits)
    s = str(ref).zfill(rdigits)
    filt = (value >> 85) & 7
    return DecodedEpc(
        epc,
        "sscc-96",
        f"urn:epc:tag:sscc-96:{filt}.{c}.{s}",
        f"urn:epc:id:sscc:{c}.{s}",
        filt,
        c,
        sscc=f"{s[0]}{c}{s[1:]}{check}",
    )


def _decode_sgln(epc: str, value: int) -> DecodedEpc | str:
    filt = (value >> 85) & 7
    partition = (value >> 82) & 7
    if partition == 7:
        return "partition 7 is invalid"
    cbits, cdigits, rbits, rdigits = SGLN_PARTITIONS[partition]
    company = (value >> (41 + rbits)) & ((1 << cbits) - 1)
    location = (value >> 41) & ((1 << rbits) - 1)
    if company >= POW10[cdigits] or location >= POW10[rdigits]:
        return "company prefix or location reference has too many digits"
    c = str(company).zfill(cdigits)
    loc = str(location).zfill(rdigits) if rdigits else ""
    ext = str(value & 0x1FFFFFFFFFF)
    body = c + loc
    return DecodedEpc(
        epc=epc,
        scheme="sgln-96",
        tag_uri=f"urn:epc:tag:sgln-96:{filt}.{c}.{loc}.{ext}",
        pure_identity=f"urn:epc:id:sgln:{c}.{loc}.{ext}",
        filter=filt,
        company_prefix=c,
        gln=body + str(weighted_check_digit(body.encode())),
        extension=ext,
    )


def _decode_grai(epc: str, value: int) -> DecodedEpc | str:
    filt = (value >> 85) & 7
    partition = (value >> 82) & 7
    if partition == 7:
        return "partition 7 is invalid"
    cbits, cdigits, rbits, rdigits = GRAI_PARTITIONS[partition]
    company = (value >> (38 + rbits)) & ((1 << cbits) - 1)
    asset = (value >> 38) & ((1 << rbits) - 1)
    if company >= POW10[cdigits] or asset >= POW10[rdigits]:
        return "company prefix or asset type has too many digits"
    c = str(company).zfill(cdigits)
    a = str(asset).zfill(rdigits) if rdigits else ""
    serial = str(value & 0x3FFFFFFFFF)
    body = "0" + c + a
    return DecodedEpc(
        epc=epc,
        scheme="grai-96",
        tag_uri=f"urn:epc:tag:grai-96:{filt}.{c}.{a}.{serial}",
        pure_identity=f"urn:epc:id:grai:{c}.{a}.{serial}",
        filter=filt,
        company_prefix=c,
        grai=body + str(weighted_check_digit(body.encode())) + serial,
        asset_type=a,
        serial=serial,
    )


def _decode_giai(epc: str, value: int) -> DecodedEpc | str:
    filt = (value >> 85) & 7
    partition = (value >> 82) & 7
    if partition == 7:
        return "partition 7 is invalid"
    cbits, cdigits, rbits, rdigits = GIAI_PARTITIONS[partition]
    company = (value >> rbits) & ((1 << cbits) - 1)
    asset = value & ((1 << rbits) - 1)
    if company >= POW10[cdigits] or asset >= POW10[rdigits]:
        return "company prefix or asset reference has too many digits"
    c = str(company).zfill(cdigits)
    a = str(asset)  # TDS §14.4.4: printed without leading zeros
    return DecodedEpc(
        epc=epc,
        scheme="giai-96",
        tag_uri=f"urn:epc:tag:giai-96:{filt}.{c}.{a}",
        pure_identity=f"urn:epc:id:giai:{c}.{a}",
        filter=filt,
        company_prefix=c,
        giai=c + a,
    )


_DECODERS: Final = {
    0x30: ("sgtin-96", _decode_sgtin),
    0x31: ("sscc-96", _decode_sscc),
    0x32: ("sgln-96", _decode_sgln),
    0x33: ("grai-96", _decode_grai),
    0x34: ("giai-96", _decode_giai),
}


def _normalise_hex(epc: str | bytes | bytearray | memoryview) -> str | None:
    if isinstance(epc, (bytes, bytearray, memoryview)):
        return bytes(epc).hex().upper()
    text = "".join(epc.split()).upper()
    if text.startswith("0X"):
        text = text[2:]
    if not text or len(text) % 2 or text.strip("0123456789ABCDEF"):
        return None
    return text


def decode_epc(epc: str | bytes | bytearray | memoryview) -> DecodedEpc:
    """Decode an EPC given as hex text (spaces allowed) or raw bytes. Never raises."""
    if epc.__class__ is str and len(epc) == 24:
        # Hot path: a 96-bit EPC in hex, as every reader codec hands it over.
        try:
            value = int(epc, 16)
        except ValueError:
            value = -1  # -1 >> 88 is -1: no decoder, so the slow path explains the failure
        header = value >> 88
        if header == 0x30:  # SGTIN-96: nearly every read in a store
            return _decode_sgtin(epc.upper(), value)
        found = _DECODERS.get(header)
        if found is not None:
            hex_text = epc.upper()
            result = found[1](hex_text, value)
            if result.__class__ is str:
                return _unknown(hex_text, f"{found[0]}: {result}")
            return result  # type: ignore[return-value]
    normalised: str | None
    try:
        normalised = _normalise_hex(epc)
    except (TypeError, ValueError, AttributeError):
        normalised = None
    if normalised is None:
        return _unknown(str(epc)[:64], "not hexadecimal")
    return _decode_slow(normalised)


def _decode_slow(hex_text: str) -> DecodedEpc:
    if not hex_text:
        return _unknown(hex_text, "empty EPC")
    header = int(hex_text[:2], 16)
    bits = len(hex_text) * 4
    found = _DECODERS.get(header)
    if found is not None:
        name, decoder = found
        if bits != _BITS_96:
            return _unknown(hex_text, f"{name} header but {bits} bits instead of 96")
        result = decoder(hex_text, int(hex_text, 16))
        return _unknown(hex_text, f"{name}: {result}") if isinstance(result, str) else result
    other = OTHER_HEADERS.get(header)
    if other is not None:
        return _unknown(hex_text, f"header {header:02X} ({other}) is not decoded here")
    return _unknown(hex_text, f"header {header:02X} is not a GS1 EPC scheme (e.g. a chip serial)")


# --------------------------------------------------------------------------------------------------
# Encoding.


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
