"""GS1 EPC Tag Data Standard codec for the 96-bit schemes a store meets on its dock door.

Decodes SGTIN-96, SSCC-96, SGLN-96, GRAI-96 and GIAI-96 (every partition, any filter value, check
digits recomputed); the encoders and check digits of ``epc_encode`` are re-exported. Anything else,
such as the ``E2...`` chip-serial EPCs many cheap tags ship with, decodes to scheme ``"unknown"`` with
a reason instead of failing.

Layouts: GS1 EPC TDS 1.13 §14 (partition tables and check-digit arithmetic in ``epc_tables``); URIs: §7
and §12.
Everything here is pure; ``decode_epc`` never raises.
"""

from __future__ import annotations

import os
from typing import Final, NamedTuple

from tenpo.shared.epc_encode import (
    DEFAULT_COMPANY_PREFIX_DIGITS,
    EpcEncodeError,
    encode_sgtin96,
    encode_sscc96,
    gs1_check_digit,
    gtin_check_digit,
)
from tenpo.shared.epc_native import compiled_module
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

UNKNOWN: Final = "unknown"


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


class DecodedEpc:
    """One EPC read from a tag, decoded. Fields that do not apply to the scheme are None.

    An SGTIN-96 (nearly every read in a store) is decoded to its numbers only: its strings (``epc``
    upper-cased, ``tag_uri``, ``pure_identity``, ``company_prefix``, ``gtin``, ``serial``) are made on
    first access and kept, as a caller wants one or two of them. Other schemes are rare and made whole.
    The public fields are properties over a compact layout (the ``_`` attributes): read them, never set
    them. Serialise with ``to_dict``. Two results are equal when their EPC, scheme and reason are;
    everything else follows from the EPC. A plain class rather than a msgspec Struct so the compiled
    build (``tenpo_epc_native``, see the end of this module) makes it a native one.
    """

    _hex: str  # the EPC in hex: upper-cased, but as read for an SGTIN (the epc property upper-cases it)
    scheme: str  # "sgtin-96", "sscc-96", "sgln-96", "grai-96", "giai-96" or "unknown"
    filter: int | None
    # SGTIN-96: its digits, company prefix, item reference and serial as numbers
    _digits: _SgtinDigits | None
    _company: int
    _item: int
    _serial: int
    # SGTIN-96: the strings once made; other schemes: their values (set by _whole)
    _tag_uri: str | None = None  # urn:epc:tag:sgtin-96:1.0614141.812345.6789
    _pure_identity: str | None = None  # urn:epc:id:sgtin:0614141.812345.6789
    _company_prefix: str | None = None
    _serial_text: str | None = None  # SGTIN and GRAI serial, printed without leading zeros
    # the scheme's GS1 key: GTIN (14 digits), SSCC (18), GLN (13), GRAI (0 + 12 digits + check +
    # serial) or GIAI (company prefix + asset reference), each with its check digit if it has one
    _key: str | None = None
    _extra: str | None = None  # SGLN extension ("0" = plain GLN) or GRAI asset type (may be empty)
    reason: str | None = None  # why the scheme is "unknown"

    def __init__(  # only what an SGTIN-96 needs: the hot path sets no more than this
        self,
        hex_text: str,
        scheme: str,
        filter: int | None = None,  # noqa: A002 - the GS1 name for the field
        digits: _SgtinDigits | None = None,
        company: int = 0,
        item: int = 0,
        serial: int = 0,
    ) -> None:
        self._hex = hex_text
        self.scheme = scheme
        self.filter = filter
        self._digits = digits
        self._company = company
        self._item = item
        self._serial = serial

    @property
    def epc(self) -> str:
        """Upper-case hex as read (the text as given when it is not hex at all)."""
        return self._hex if self._digits is None else self._hex.upper()  # only an SGTIN keeps the read

    @property
    def known(self) -> bool:
        return self.scheme != UNKNOWN

    # Each lazy field: the string kept, else (an SGTIN) made from the numbers and kept.
    @property
    def pure_identity(self) -> str | None:
        text = self._pure_identity
        digits = self._digits
        if text is None and digits is not None:
            c = str(self._company).zfill(digits.company_digits)
            text = f"urn:epc:id:sgtin:{c}.{str(self._item).zfill(digits.item_digits)}.{self._serial}"
            self._pure_identity = text
        return text

    @property
    def tag_uri(self) -> str | None:
        text = self._tag_uri
        digits = self._digits
        if text is None and digits is not None:
            c = str(self._company).zfill(digits.company_digits)
            text = f"{digits.tag_uri_prefix}{c}.{str(self._item).zfill(digits.item_digits)}.{self._serial}"
            self._tag_uri = text
        return text

    @property
    def company_prefix(self) -> str | None:
        text = self._company_prefix
        digits = self._digits
        if text is None and digits is not None:
            text = str(self._company).zfill(digits.company_digits)
            self._company_prefix = text
        return text

    @property
    def serial(self) -> str | None:
        text = self._serial_text
        if text is None and self._digits is not None:
            text = str(self._serial)
            self._serial_text = text
        return text

    @property
    def gtin(self) -> str | None:
        digits = self._digits
        if digits is None:
            return None
        text = self._key
        if text is None:
            text = _gtin(digits, self._company, self._item)
            self._key = text
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


def filter_meaning(scheme: str, filter_value: int) -> str:
    """Human meaning of a filter value for a scheme ("" when unknown)."""
    meanings = FILTER_MEANINGS.get(scheme)
    if meanings is None or not 0 <= filter_value < 8:
        return ""
    return meanings[filter_value]


_BITS_96: Final = 96


def _unknown(epc: str, reason: str) -> DecodedEpc:
    decoded = DecodedEpc(epc, UNKNOWN)
    decoded.reason = reason
    return decoded


def _whole(
    epc: str, scheme: str, filt: int, *, tag_uri: str, pure_identity: str, company_prefix: str, key: str,
    extra: str | None = None, serial: str | None = None,
) -> DecodedEpc:
    """A decoded EPC of a scheme other than SGTIN-96, every string made."""
    decoded = DecodedEpc(epc, scheme, filt)
    decoded._tag_uri, decoded._pure_identity, decoded._company_prefix = tag_uri, pure_identity, company_prefix
    decoded._key, decoded._extra, decoded._serial_text = key, extra, serial
    return decoded


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
        return _unknown(epc.upper(), "sgtin-96: company prefix or item reference has too many digits")
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
    return _whole(
        epc,
        "sscc-96",
        filt,
        tag_uri=f"urn:epc:tag:sscc-96:{filt}.{c}.{s}",
        pure_identity=f"urn:epc:id:sscc:{c}.{s}",
        company_prefix=c,
        key=f"{s[0]}{c}{s[1:]}{check}",
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
    return _whole(
        epc,
        "sgln-96",
        filt,
        tag_uri=f"urn:epc:tag:sgln-96:{filt}.{c}.{loc}.{ext}",
        pure_identity=f"urn:epc:id:sgln:{c}.{loc}.{ext}",
        company_prefix=c,
        key=body + str(weighted_check_digit(body.encode())),
        extra=ext,
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
    return _whole(
        epc,
        "grai-96",
        filt,
        tag_uri=f"urn:epc:tag:grai-96:{filt}.{c}.{a}.{serial}",
        pure_identity=f"urn:epc:id:grai:{c}.{a}.{serial}",
        company_prefix=c,
        key=body + str(weighted_check_digit(body.encode())) + serial,
        extra=a,
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
    return _whole(
        epc,
        "giai-96",
        filt,
        tag_uri=f"urn:epc:tag:giai-96:{filt}.{c}.{a}",
        pure_identity=f"urn:epc:id:giai:{c}.{a}",
        company_prefix=c,
        key=c + a,
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


# The compiled build of this file (epc_native, docs/rfid.md) stands in for the decoder and its result
# class when it was made from this very source; TENPO_EPC_PYTHON=1 keeps pure Python.
IMPLEMENTATION = "python"
if __name__ == "tenpo.shared.epc" and not os.environ.get("TENPO_EPC_PYTHON"):
    _native = compiled_module()
    if _native is not None:
        # globals(): the names stay typed as the definitions above, which the build is a copy of
        globals().update(DecodedEpc=_native.DecodedEpc, decode_epc=_native.decode_epc, IMPLEMENTATION="compiled")
