"""GS1 EPC Tag Data Standard codec for the 96-bit schemes a store meets on its dock door.

Decodes SGTIN-96, SSCC-96, SGLN-96, GRAI-96 and GIAI-96 (every partition, any filter value, check
digits recomputed) and encodes SGTIN-96 and SSCC-96. Anything else, such as the ``E2...`` chip-serial
EPCs many cheap tags ship with, decodes to scheme ``"unknown"`` with a reason instead of failing.

Layouts: GS1 EPC TDS 1.13 §14 (partition tables and check-digit arithmetic in ``epc_tables``); URIs: §7
and §12.
Everything here is pure; ``decode_epc`` never raises.
"""

from __future__ import annotations

from typing import Final, NamedTuple

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


class _SgtinDigits(NamedTuple):
    """What an SGTIN-96's strings need from its partition and filter."""

    tag_uri_prefix: str  # "urn:epc:tag:sgtin-96:1."
    company_digits: int
    item_digits: int
    scale: int  # 10**(item digits - 1): the item reference's first digit leads the GTIN
    split: int  # 10**(7 - item digits): where the check-digit table cuts the company prefix


# SGTIN rows by the 14 bits above company and item (header, filter, partition): the filter, the
# masks and limits that take company and item out of the 58 bits above the serial, and the digits.
# Partition 7 has none.
_SgtinRow = tuple[int, int, int, int, int, int, _SgtinDigits]
_SGTIN_ROWS: Final[dict[int, _SgtinRow]] = {
    (0x30 << 6) | (filt << 3) | partition: (
        filt, rbits, cmask, climit, rmask, rlimit,
        _SgtinDigits(f"urn:epc:tag:sgtin-96:{filt}.", cdigits, rdigits, scale, split),
    )
    for filt in range(8)
    for partition, layout in enumerate(layouts(SGTIN_PARTITIONS))
    if layout is not None
    for rbits, cmask, climit, rmask, rlimit, cdigits, rdigits, scale, split in (layout,)
}


class DecodedEpc(msgspec.Struct, frozen=True, gc=False):
    """One EPC read from a tag, decoded. Fields that do not apply to the scheme are None.

    An SGTIN-96 (nearly every read in a store) is decoded to its numbers only: its strings (``epc``
    upper-cased, ``tag_uri``, ``pure_identity``, ``company_prefix``, ``gtin``, ``serial``) are made on
    first access and kept, as a caller wants one or two of them. Other schemes are rare and made whole.
    The public fields are properties over a compact layout (the ``_`` fields; fewer fields make a
    faster struct): serialise with ``to_dict``, not msgspec's encoders. Two results are equal when their
    EPC, scheme and reason are; everything else follows from the EPC.
    """

    _hex: str  # the EPC as read, in hex; the epc property upper-cases it
    scheme: str  # "sgtin-96", "sscc-96", "sgln-96", "grai-96", "giai-96" or "unknown"
    filter: int | None = None
    # SGTIN-96: its digits, company prefix, item reference and serial as numbers
    _digits: _SgtinDigits | None = None
    _company: int = 0
    _item: int = 0
    _serial: int = 0
    # SGTIN-96: the strings once made; other schemes: their values
    _tag_uri: str | None = None  # urn:epc:tag:sgtin-96:1.0614141.812345.6789
    _pure_identity: str | None = None  # urn:epc:id:sgtin:0614141.812345.6789
    _company_prefix: str | None = None
    _serial_text: str | None = None  # SGTIN and GRAI serial, printed without leading zeros
    # the scheme's GS1 key: GTIN (14 digits), SSCC (18), GLN (13), GRAI (0 + 12 digits + check +
    # serial) or GIAI (company prefix + asset reference), each with its check digit if it has one
    _key: str | None = None
    _extra: str | None = None  # SGLN extension ("0" = plain GLN) or GRAI asset type (may be empty)
    reason: str | None = None  # why the scheme is "unknown"

    @property
    def epc(self) -> str:
        """Upper-case hex as read."""
        return self._hex.upper()

    @property
    def known(self) -> bool:
        return self.scheme != UNKNOWN

    # Each lazy field: the string kept, else (an SGTIN) made from the numbers and kept through its
    # slot's descriptor, which a frozen struct leaves usable.
    @property
    def pure_identity(self) -> str | None:
        text = self._pure_identity
        digits = self._digits
        if text is None and digits is not None:
            c = str(self._company).zfill(digits.company_digits)
            text = f"urn:epc:id:sgtin:{c}.{str(self._item).zfill(digits.item_digits)}.{self._serial}"
            _KEEP_PURE_IDENTITY(self, text)
        return text

    @property
    def tag_uri(self) -> str | None:
        text = self._tag_uri
        digits = self._digits
        if text is None and digits is not None:
            c = str(self._company).zfill(digits.company_digits)
            text = f"{digits.tag_uri_prefix}{c}.{str(self._item).zfill(digits.item_digits)}.{self._serial}"
            _KEEP_TAG_URI(self, text)
        return text

    @property
    def company_prefix(self) -> str | None:
        text = self._company_prefix
        digits = self._digits
        if text is None and digits is not None:
            text = str(self._company).zfill(digits.company_digits)
            _KEEP_COMPANY_PREFIX(self, text)
        return text

    @property
    def serial(self) -> str | None:
        text = self._serial_text
        if text is None and self._digits is not None:
            text = str(self._serial)
            _KEEP_SERIAL(self, text)
        return text

    @property
    def gtin(self) -> str | None:
        digits = self._digits
        if digits is None:
            return None
        text = self._key
        if text is None:
            text = _gtin(digits, self._company, self._item)
            _KEEP_KEY(self, text)
        return text

    @property
    def sscc(self) -> str | None:
        return self._key if self.scheme == "sscc-96" else None

    @property
    def gln(self) -> str | None:
        return self._key if self.scheme == "sgln-96" else None

    @property
    def grai(self) -> str | None:
        return self._key if self.scheme == "grai-96" else None

    @property
    def giai(self) -> str | None:
        return self._key if self.scheme == "giai-96" else None

    @property
    def extension(self) -> str | None:
        return self._extra if self.scheme == "sgln-96" else None

    @property
    def asset_type(self) -> str | None:
        return self._extra if self.scheme == "grai-96" else None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DecodedEpc):
            return NotImplemented
        return (self.epc, self.scheme, self.reason) == (other.epc, other.scheme, other.reason)

    def __hash__(self) -> int:
        return hash((self.epc, self.scheme, self.reason))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.to_dict().items())
        return f"DecodedEpc({fields})"

    def to_dict(self) -> dict[str, object]:
        """The fields that apply to this scheme (None left out), for JSON output."""
        values = ((name, getattr(self, name)) for name in PUBLIC_FIELDS)
        return {name: value for name, value in values if value is not None}


# The public fields, in the order to_dict gives them (the JSON names of `tenpo epc decode --json`).
PUBLIC_FIELDS: Final = (
    "epc", "scheme", "tag_uri", "pure_identity", "filter", "company_prefix", "gtin", "serial", "sscc",
    "gln", "extension", "grai", "asset_type", "giai", "reason",
)
_SLOTS: Final = DecodedEpc.__dict__
_KEEP_PURE_IDENTITY: Final = _SLOTS["_pure_identity"].__set__
_KEEP_TAG_URI: Final = _SLOTS["_tag_uri"].__set__
_KEEP_COMPANY_PREFIX: Final = _SLOTS["_company_prefix"].__set__
_KEEP_SERIAL: Final = _SLOTS["_serial_text"].__set__
_KEEP_KEY: Final = _SLOTS["_key"].__set__


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
    return DecodedEpc(epc, UNKNOWN, reason=reason)


# --------------------------------------------------------------------------------------------------
# Decoding. Each scheme decoder takes the 96-bit value and returns a DecodedEpc or a failure reason
# (SGTIN, the hot one, wraps its failures itself). Tables and check-digit arithmetic: epc_tables.

# SGTIN-96 is the item-level tag and the hot path: it is checked and taken apart into numbers here;
# DecodedEpc makes the strings a caller asks for.


def _decode_sgtin(epc: str, value: int, row: _SgtinRow) -> DecodedEpc:
    filt, rbits, cmask, climit, rmask, rlimit, digits = row
    top = value >> 38
    company = (top >> rbits) & cmask
    item = top & rmask
    if company >= climit or item >= rlimit:
        return _unknown(epc, "sgtin-96: company prefix or item reference has too many digits")
    return DecodedEpc(epc, "sgtin-96", filt, digits, company, item, value & 0x3FFFFFFFFF)


def _decode_any_sgtin(epc: str, value: int) -> DecodedEpc | str:
    row = _SGTIN_ROWS.get(value >> 82)
    return "partition 7 is invalid" if row is None else _decode_sgtin(epc, value, row)


def _gtin(digits: _SgtinDigits, company: int, item: int) -> str:
    # GTIN digits 2..13 are company * scale + item % scale; the table takes them as two 6-digit
    # halves, computed from the small parts so no intermediate outgrows a machine word.
    scale = digits.scale
    weighted = WEIGHTED
    check = CHECK_DIGIT[3 * (item // scale) + weighted[company // digits.split]
                         + weighted[company % digits.split * scale + item % scale]]
    i = str(item).zfill(digits.item_digits)
    return f"{i[0]}{str(company).zfill(digits.company_digits)}{i[1:]}{check}"


_SSCC_LAYOUT: Final = layouts(SSCC_PARTITIONS)


def _decode_sscc(epc: str, value: int) -> DecodedEpc | str:
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
        _hex=epc,
        scheme="sscc-96",
        _tag_uri=f"urn:epc:tag:sscc-96:{filt}.{c}.{s}",
        _pure_identity=f"urn:epc:id:sscc:{c}.{s}",
        filter=filt,
        _company_prefix=c,
        _key=f"{s[0]}{c}{s[1:]}{check}",
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
        _hex=epc,
        scheme="sgln-96",
        _tag_uri=f"urn:epc:tag:sgln-96:{filt}.{c}.{loc}.{ext}",
        _pure_identity=f"urn:epc:id:sgln:{c}.{loc}.{ext}",
        filter=filt,
        _company_prefix=c,
        _key=body + str(weighted_check_digit(body.encode())),
        _extra=ext,
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
        _hex=epc,
        scheme="grai-96",
        _tag_uri=f"urn:epc:tag:grai-96:{filt}.{c}.{a}.{serial}",
        _pure_identity=f"urn:epc:id:grai:{c}.{a}.{serial}",
        filter=filt,
        _company_prefix=c,
        _key=body + str(weighted_check_digit(body.encode())) + serial,
        _extra=a,
        _serial_text=serial,
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
        _hex=epc,
        scheme="giai-96",
        _tag_uri=f"urn:epc:tag:giai-96:{filt}.{c}.{a}",
        _pure_identity=f"urn:epc:id:giai:{c}.{a}",
        filter=filt,
        _company_prefix=c,
        _key=c + a,
    )


_DECODERS: Final = {
    0x30: ("sgtin-96", _decode_any_sgtin),
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
            value = -1  # -1 >> 82 is -1: no row, no decoder, so the slow path explains the failure
        row = _SGTIN_ROWS.get(value >> 82)
        if row is not None:  # SGTIN-96 (partitions 0-6): nearly every read in a store
            return _decode_sgtin(epc, value, row)
        found = _DECODERS.get(value >> 88)
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
