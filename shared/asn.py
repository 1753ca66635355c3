"""Advance ship notices (ASNs): the value both HQ and the store hold, and its JSON and CSV file formats.

HQ imports a file and sends each ASN down the change feed; a store may also load one from a file.
Both sides parse with :func:`parse_asn_file`, and the store re-checks what the feed brings with
:func:`asn_from_dict` (feed data is outside input too). Parsing is pure: text in, ASNs and
per-row errors out. A shipment with any bad row is rejected as a whole, because half an ASN would
turn the missing half into "unexpected" items at the dock.

An ASN expects either serialised items (``epcs``, usually SGTIN-96) or quantities per GTIN
(``lines``), not both; SSCC carton labels are optional either way. Formats: docs/rfid.md.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from tenpo.shared.epc import gs1_check_digit
from tenpo.shared.errors import UserError
from tenpo.shared.protocol import valid_store_id

MAX_QTY: Final = 1_000_000
CSV_COLUMNS: Final = ("shipment_id", "store", "epc", "gtin", "qty", "sscc", "sku", "supplier", "expected_at")
_HEX_EPC: Final = re.compile(r"(?:[0-9A-F]{2}){4,32}")  # 32 .. 256 bits in whole bytes
_SHIPMENT_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")


class AsnLine(msgspec.Struct, frozen=True, omit_defaults=True):
    """An expected quantity of one GTIN (non-serialised ASN)."""

    gtin: str  # 14 digits, check digit verified
    qty: int
    sku: str | None = None  # the store's SKU when the sender knows it; else found by JAN/GTIN


class Asn(msgspec.Struct, frozen=True, omit_defaults=True):
    shipment_id: str
    store: str  # destination store id
    epcs: tuple[str, ...] = ()  # expected item EPCs, upper-case hex
    lines: tuple[AsnLine, ...] = ()
    cartons: tuple[str, ...] = ()  # SSCCs, 18 digits
    supplier: str | None = None
    expected_at: str | None = None  # as the sender wrote it (ISO 8601 date or time)

    @property
    def serialised(self) -> bool:
        return bool(self.epcs)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


@dataclass(frozen=True, slots=True)
class RowError:
    where: str  # "line 7" (CSV) or "asn 2 epcs[14]" (JSON)
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True, slots=True)
class ParsedAsns:
    asns: list[Asn]
    errors: list[RowError]
    rejected_shipments: list[str]


class AsnFormatError(ValueError):
    """The file as a whole cannot be read as ASNs (not JSON, no header, unknown columns...)."""


# ---------------------------------------------------------------------------- field checks


def normalise_gtin(value: Any) -> str:
    """A GTIN-8/12/13/14 as 14 digits; raises ValueError naming what is wrong."""
    text = str(value).strip() if value is not None else ""
    if not text.isascii() or not text.isdigit() or len(text) not in (8, 12, 13, 14):
        raise ValueError(f"gtin {text!r} must be 8, 12, 13 or 14 digits")
    gtin = text.zfill(14)
    expected = gs1_check_digit(gtin[:13])
    if int(gtin[13]) != expected:
        raise ValueError(f"gtin {text} has check digit {gtin[13]}, expected {expected}")
    return gtin


def normalise_epc(value: Any) -> str:
    text = "".join(str(value).split()).upper() if value is not None else ""
    if not _HEX_EPC.fullmatch(text):
        raise ValueError(f"epc {str(value)[:40]!r} must be hexadecimal, 8 to 64 digits in whole bytes")
    return text


def normalise_sscc(value: Any) -> str:
    text = str(value).strip() if value is not None else ""
    if not text.isascii() or not text.isdigit() or len(text) != 18:
        raise ValueError(f"sscc {text!r} must be 18 digits")
    expected = gs1_check_digit(text[:17])
    if int(text[17]) != expected:
        raise ValueError(f"sscc {text} has check digit {text[17]}, expected {expected}")
    return text


def _qty(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"qty {value!r} must be a whole number")
    if isinstance(value, int):
        qty = value
    else:
        try:
            qty = int(str(value).strip())
        except ValueError:
            raise ValueError(f"qty {value!r} must be a whole number") from None
    if not 0 < qty <= MAX_QTY:
        raise ValueError(f"qty {qty} must be between 1 and {MAX_QTY}")
    return qty


def _shipment_id(value: Any) -> str:
    text = str(value).strip() if value is not None else ""
    if not _SHIPMENT_ID.fullmatch(text):
        raise ValueError(f"shipment_id {text!r} must be 1-64 letters, digits or . _ : / -")
    return text


def _store(value: Any) -> str:
    text = str(value).strip() if value is not None else ""
    if not valid_store_id(text):
        raise ValueError(f"store {text!r} is not a store id (letters, digits, '-' and '_')")
    return text


def _optional_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# ---------------------------------------------------------------------------- building one ASN


@dataclass(slots=True)
class _Draft:
    shipment_id: str
    store: str
    where: str  # where the shipment was first seen, for conflict messages
    epcs: dict[str, None]  # ordered set
    lines: dict[str, AsnLine]
    cartons: dict[str, None]
    supplier: str | None = None
    expected_at: str | None = None
    bad: bool = False

    def finish(self, errors: list[RowError]) -> Asn | None:
        if self.bad:
            return None
        if self.epcs and self.lines:
            errors.append(RowError(self.where, f"shipment {self.shipment_id}: give expected epcs or gtin quantities, not both"))
            return None
        if not self.epcs and not self.lines:
            errors.append(RowError(self.where, f"shipment {self.shipment_id}: expects nothing (no epc and no gtin/qty)"))
            return None
        return Asn(self.shipment_id, self.store, tuple(self.epcs), tuple(self.lines.values()), tuple(self.cartons),
                   self.supplier, self.expected_at)  # fmt: skip


def _add_line(draft: _Draft, gtin: str, qty: int, sku: str | None, where: str, errors: list[RowError]) -> None:
    known = draft.lines.get(gtin)
    if known is not None and known.sku != sku:
        errors.append(RowError(where, f"gtin {gtin} named with sku {sku!r} and {known.sku!r}"))
        draft.bad = True
        return
    draft.lines[gtin] = AsnLine(gtin, qty + (known.qty if known else 0), sku)


def _finish_all(drafts: dict[str, _Draft], errors: list[RowError]) -> ParsedAsns:
    asns, rejected = [], []
    for draft in drafts.values():
        asn = draft.finish(errors)
        if asn is None:
            rejected.append(draft.shipment_id)
        else:
            asns.append(asn)
    return ParsedAsns(asns, errors, rejected)


# ---------------------------------------------------------------------------- CSV


def parse_asn_csv(text: str) -> ParsedAsns:
    """One row per expected EPC, per GTIN quantity or per carton; rows grouped by ``shipment_id``."""
    try:
        return _parse_csv(csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline="")))
    except csv.Error as exc:
        raise AsnFormatError(f"not readable as CSV ({exc})") from None


def _parse_csv(reader: csv.DictReader[str]) -> ParsedAsns:
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    missing = [c for c in ("shipment_id", "store") if c not in columns]
    if missing:
        raise AsnFormatError(f"missing column(s) {', '.join(missing)} (columns: {', '.join(CSV_COLUMNS)})")
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if unknown:
        raise AsnFormatError(f"unknown column(s) {', '.join(unknown)} (columns: {', '.join(CSV_COLUMNS)})")
    drafts: dict[str, _Draft] = {}
    errors: list[RowError] = []
    for number, row in enumerate(reader, start=2):
        where = f"line {number}"
        if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
            continue
        if None in row:  # more fields than columns
            errors.append(RowError(where, "more fields than columns"))
            _mark_bad(drafts, row.get("shipment_id"))
            continue
        try:
            shipment_id = _shipment_id(row.get("shipment_id"))
        except ValueError as exc:
            errors.append(RowError(where, str(exc)))
            continue
        try:
            store = _store(row.get("store"))
        except ValueError as exc:
            errors.append(RowError(where, str(exc)))
            drafts.setdefault(shipment_id, _Draft(shipment_id, "", where, {}, {}, {})).bad = True
            continue
        draft = drafts.get(shipment_id)
        if draft is None:
            draft = drafts[shipment_id] = _Draft(shipment_id, store, where, {}, {}, {})
        elif draft.store != store:
            errors.append(RowError(where, f"store {store} differs from {draft.store} given for {shipment_id} on {draft.where}"))
            draft.bad = True
            continue
        _csv_row(draft, row, where, errors)
    return _finish_all(drafts, errors)


def _mark_bad(drafts: dict[str, _Draft], shipment_id: Any) -> None:
    draft = drafts.get(str(shipment_id or "").strip())
    if draft is not None:
        draft.bad = True


def _csv_row(draft: _Draft, row: dict[str, Any], where: str, errors: list[RowError]) -> None:
    def cell(name: str) -> str:
        return (row.get(name) or "").strip()

    epc, gtin, qty, sscc = cell("epc"), cell("gtin"), cell("qty"), cell("sscc")
    try:
        if epc and (gtin or qty):
            raise ValueError("give epc or gtin+qty on a row, not both")
        if not epc and not gtin and not sscc:
            raise ValueError("row names no epc, gtin or sscc")
        if gtin or qty:
            if not gtin:
                raise ValueError("qty given without gtin")
            line = (normalise_gtin(gtin), _qty(qty or "1"), _optional_text(cell("sku")))
        else:
            line = None
        epc_value = normalise_epc(epc) if epc else None
        carton = normalise_sscc(sscc) if sscc else None
    except ValueError as exc:
        errors.append(RowError(where, str(exc)))
        draft.bad = True
        return
    if epc_value is not None:
        draft.epcs[epc_value] = None
    if line is not None:
        _add_line(draft, *line, where, errors)
    if carton is not None:
        draft.cartons[carton] = None
    draft.supplier = draft.supplier or _optional_text(row.get("supplier"))
    draft.expected_at = draft.expected_at or _optional_text(row.get("expected_at"))


# ---------------------------------------------------------------------------- JSON


def parse_asn_json(text: str) -> ParsedAsns:
    """One ASN object, a list of them, or ``{"asns": [...]}``."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AsnFormatError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if isinstance(document, dict) and "asns" in document:
        document = document["asns"]
    items = document if isinstance(document, list) else [document]
    drafts: dict[str, _Draft] = {}
    errors: list[RowError] = []
    for index, item in enumerate(items, start=1):
        _json_asn(item, f"asn {index}", drafts, errors)
    return _finish_all(drafts, errors)


def asn_from_dict(data: Any) -> Asn:
    """One ASN from a dict (the change feed's data); raises ValueError listing what is wrong."""
    drafts: dict[str, _Draft] = {}
    errors: list[RowError] = []
    _json_asn(data, "asn", drafts, errors)
    parsed = _finish_all(drafts, errors)
    if parsed.errors or not parsed.asns:
        raise ValueError("; ".join(str(e) for e in parsed.errors) or "not an ASN")
    return parsed.asns[0]


def _json_asn(item: Any, where: str, drafts: dict[str, _Draft], errors: list[RowError]) -> None:
    if not isinstance(item, dict):
        errors.append(RowError(where, "must be an object"))
        return
    try:
        shipment_id = _shipment_id(item.get("shipment_id"))
    except ValueError as exc:
        errors.append(RowError(where, str(exc)))
        return
    where = f"{where} ({shipment_id})"
    if shipment_id in drafts:
        errors.append(RowError(where, f"shipment {shipment_id} appears twice"))
        drafts[shipment_id].bad = True
        return
    try:
        store = _store(item.get("store"))
    except ValueError as exc:
        errors.append(RowError(where, str(exc)))
        drafts[shipment_id] = _Draft(shipment_id, "", where, {}, {}, {}, bad=True)
        return
    draft = drafts[shipment_id] = _Draft(shipment_id, store, where, {}, {}, {})
    draft.supplier = _optional_text(item.get("supplier"))
    draft.expected_at = _optional_text(item.get("expected_at"))
    for key, normalise, target in (("epcs", normalise_epc, draft.epcs), ("cartons", normalise_sscc, draft.cartons)):
        for position, value in _listed(item, key, where, draft, errors):
            try:
                target[normalise(value)] = None
            except ValueError as exc:
                errors.append(RowError(f"{where} {key}[{position}]", str(exc)))
                draft.bad = True
    for position, line in _listed(item, "lines", where, draft, errors):
        at = f"{where} lines[{position}]"
        if not isinstance(line, dict):
            errors.append(RowError(at, "must be an object with gtin and qty"))
            draft.bad = True
            continue
        try:
            gtin, qty = normalise_gtin(line.get("gtin")), _qty(line.get("qty"))
        except ValueError as exc:
            errors.append(RowError(at, str(exc)))
            draft.bad = True
            continue
        _add_line(draft, gtin, qty, _optional_text(line.get("sku")), at, errors)


def _listed(item: dict[str, Any], key: str, where: str, draft: _Draft, errors: list[RowError]) -> Iterable[tuple[int, Any]]:
    values = item.get(key)
    if values is None:
        return []
    if not isinstance(values, list):
        errors.append(RowError(f"{where} {key}", "must be a list"))
        draft.bad = True
        return []
    return enumerate(values)


# ---------------------------------------------------------------------------- files


def parse_asn_file(name: str, data: bytes) -> ParsedAsns:
    """Parse by content: JSON if it starts with ``{`` or ``[``, CSV otherwise (``name`` only for messages)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AsnFormatError(f"{name}: not UTF-8 text") from None
    stripped = text.lstrip()
    if not stripped:
        raise AsnFormatError(f"{name}: empty file")
    try:
        if stripped[0] in "[{":
            return parse_asn_json(text)
        return parse_asn_csv(text)
    except AsnFormatError as exc:
        raise AsnFormatError(f"{name}: {exc}") from None


def read_asn_file(path: Path) -> ParsedAsns:
    """Read and parse an ASN file (HQ's import and the store's local load): one line for what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return parse_asn_file(str(path), data)
    except AsnFormatError as exc:
        raise UserError(str(exc)) from None
