"""Import file formats, parsed as streams: member lists (CSV) and orders (Shopify CSV, JSON Lines). Pure.

Readers take an iterable of text lines and yield one parsed item per row (or per order), or a
`Rejected` with the line and the reason; a bad row never stops the file. Nothing here touches the
database. Formats are documented with examples in docs/members.md §3.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from tenpo.shared.field_bounds import MAX_CSV_FIELD_CHARS, MAX_ID_CHARS, MAX_WORD_CHARS, kept, refuse_long, too_long
from tenpo.shared.prefectures import prefecture_by_code

JST = timezone(timedelta(hours=9))
MEMBER_COLUMNS = ("source", "source_id", "name", "kana", "email", "phone", "postal_code", "address", "birth_date", "card_no")
# Optional columns of a member list with a meaning of their own; any other column is a custom field.
MEMBER_EXTRAS = ("updated_at", "verified", "marketing_consent")
CUSTOMER_FIELDS = ("name", "kana", "email", "phone", "postal_code", "address")
SHOPIFY_REQUIRED = ("Name", "Lineitem quantity", "Lineitem price")
_YES = {"yes", "true", "1", "y", "はい", "同意"}
_NO = {"no", "false", "0", "n", "いいえ", "拒否", ""}


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class MemberRow:
    line: int
    source: str
    source_id: str
    fields: dict[str, str]  # the member fields, raw (cleansing happens at import)
    custom: dict[str, str]
    updated_at: str | None
    verified: frozenset[str]
    marketing_consent: bool | None
    raw: dict[str, str]  # the row as read, for the idempotency hash
    flagged: dict[str, str] = field(default_factory=dict)  # other columns that could not be read: {column: reason}


@dataclass(frozen=True, slots=True)
class OrderLine:
    sku: str | None
    jan: str | None
    name: str | None
    qty: int
    price: int  # yen per unit


@dataclass(frozen=True, slots=True)
class Order:
    line: int
    order_id: str
    channel: str
    ordered_at: str | None  # ISO 8601 UTC
    status: str
    customer: dict[str, str]  # raw customer fields, plus "id" when the channel gives one
    lines: tuple[OrderLine, ...]
    discount: int
    refunded: int
    marketing_consent: bool | None
    raw: Any

    @property
    def total(self) -> int:
        """The basis for points: goods, less discount and refunds (shipping and fees earn nothing)."""
        return max(0, sum(line.qty * line.price for line in self.lines) - self.discount - self.refunded)

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.order_id}"


# ---------------------------------------------------------------------------- text and values


def detect_encoding(head: bytes) -> str:
    """utf-8-sig with a BOM, else utf-8 or cp932 (Excel's Shift_JIS), whichever decodes the head."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    errors = {}
    for encoding in ("utf-8", "cp932"):
        try:
            codecs.getincrementaldecoder(encoding)().decode(head, final=False)  # a cut multi-byte tail is fine
            return encoding
        except UnicodeDecodeError:
            decoded = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head, final=False)
            errors[encoding] = decoded.count("\ufffd")
    # Neither is clean (a few corrupt bytes): the one with fewer bad characters; those rows get rejected.
    return min(errors, key=lambda encoding: (errors[encoding], encoding != "utf-8"))


def yen(text: str | None, field: str) -> int:
    """'1500', '1,500', '¥1,500', '1500.00' -> 1500; a fraction of a yen is an error."""
    cleaned = (text or "").strip().replace(",", "").lstrip("¥￥")
    if not cleaned:
        raise ValueError(f"{field}: missing")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{field}: {text!r} is not an amount of yen") from None
    if value != value.to_integral_value():
        raise ValueError(f"{field}: {text!r} is not a whole number of yen")
    if value < 0:
        raise ValueError(f"{field}: must not be negative")
    return int(value)


def quantity(text: Any, field: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not a whole number") from None
    if value <= 0:
        raise ValueError(f"{field}: must be at least 1")
    return value


def iso_utc(text: str | None) -> str | None:
    """Timestamps as shops write them ('2024-03-01 10:30:00 +0900', ISO 8601) to ISO UTC; no zone: JST."""
    text = (text or "").strip()
    if not text:
        return None
    if len(text) == 20 and text[10] == "T" and text[19] == "Z":  # already UTC to the second: most exports
        try:
            bare = datetime.fromisoformat(text[:19])
        except ValueError:
            bare = None
        if bare is not None and bare.year >= 1000 and bare.isoformat() == text[:19]:  # as strftime writes it
            return f"{text[:19]}.000000Z"
    parsed = None
    attempts: tuple[Callable[[], datetime], ...] = (
        lambda: datetime.fromisoformat(text.replace("Z", "+00:00")),
        lambda: datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z"),
        lambda: datetime.strptime(text, "%Y/%m/%d %H:%M"),
    )
    for attempt in attempts:
        try:
            parsed = attempt()
            break
        except ValueError:
            continue
    if parsed is None:
        raise ValueError(f"timestamp {text!r} is not ISO 8601")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=JST)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def yes_no(text: str | None) -> bool | None:
    value = (text or "").strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return None if value == "" else False
    return None


def _csv_rows(reader: csv.DictReader[str]) -> Iterator[tuple[int, dict[str, str] | None, str]]:
    """(line, row, "") per row, or (line, None, problem) for a line the csv module cannot split."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, None, f"not CSV ({exc})"
            continue
        yield reader.line_num, row, ""


def _bad_bytes(values: Iterable[Any]) -> bool:
    return any(isinstance(v, str) and "\ufffd" in v for v in values)


# ---------------------------------------------------------------------------- member lists


def member_rows(lines: Iterable[str]) -> Iterator[MemberRow | Rejected]:
    """A legacy member list (CSV with a header); lines decoded with errors='replace'."""
    reader = csv.DictReader(lines)
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    missing = [c for c in ("source", "source_id") if c not in header]
    if missing:
        raise ValueError(f"missing column(s) {', '.join(missing)} (columns: {', '.join(MEMBER_COLUMNS)})")
    custom_columns = [h for h in header if h and h not in MEMBER_COLUMNS and h not in MEMBER_EXTRAS]
    for column in custom_columns:  # issue 14: a custom field's name becomes a key in every store's feed
        refuse_long(column, f"column name {column[:MAX_WORD_CHARS]!r}…", MAX_WORD_CHARS)
    csv.field_size_limit(max(csv.field_size_limit(), MAX_CSV_FIELD_CHARS))  # a long field is flagged, not the row lost
    for line, row, problem in _csv_rows(reader):
        if row is None:
            yield Rejected(line, "", problem)
            continue
        source, source_id = (row.get("source") or "").strip(), (row.get("source_id") or "").strip()
        key = f"{source}:{source_id}"
        if None in row:
            yield Rejected(line, key, f"{len(row[None])} more value(s) than columns")  # type: ignore[index]
            continue
        if _bad_bytes((source, source_id)):  # a bad byte elsewhere spoils only its field (flagged at import)
            yield Rejected(line, key, "bytes that are not valid text in the file's encoding")
            continue
        if not source or not source_id:
            yield Rejected(line, key, "source and source_id are required")
            continue
        if len(source) > MAX_WORD_CHARS or len(source_id) > MAX_ID_CHARS:  # issue 14: they key the record
            yield Rejected(line, key[:MAX_ID_CHARS], f"source/source_id: {len(source)}/{len(source_id)} characters,"
                           f" at most {MAX_WORD_CHARS}/{MAX_ID_CHARS}")  # fmt: skip
            continue
        if ":" in source:
            yield Rejected(line, key, f"source {source!r} must not contain ':'")
            continue
        flagged: dict[str, str] = {}
        try:
            updated_at = iso_utc(row.get("updated_at"))
        except ValueError as exc:
            updated_at, flagged["updated_at"] = None, str(exc)
        fields = {c: row.get(c) or "" for c in MEMBER_COLUMNS[2:]}
        custom = {c: row[c] for c in custom_columns if row.get(c)}
        raw = {k: v for k, v in row.items() if k}
        # issue 14: an over-long value keeps its record; the field is flagged (raw kept up to a cap), not used.
        for values in (fields, custom):
            for column in [c for c, v in values.items() if too_long(v)]:
                flagged[column], raw[column] = str(too_long(values[column])), kept(values[column])
                values[column] = ""
        yield MemberRow(
            line=line, source=source, source_id=source_id,
            fields=fields,
            custom={c: v for c, v in custom.items() if v},
            updated_at=updated_at,
            verified=frozenset(v.strip() for v in re.split(r"[;, ]", row.get("verified") or "") if v.strip()),
            marketing_consent=yes_no(row.get("marketing_consent")),
            raw=raw, flagged=flagged,
        )  # fmt: skip


# ---------------------------------------------------------------------------- orders


def shopify_orders(lines: Iterable[str], channel: str = "web") -> Iterator[Order | Rejected]:
    """Shopify's orders export: one row per line item, the order's own fields on its first row."""
    csv.field_size_limit(max(csv.field_size_limit(), MAX_CSV_FIELD_CHARS))  # issue 14: flagged, not the row lost
    reader = csv.DictReader(lines)
    missing = [c for c in SHOPIFY_REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"missing Shopify column(s) {', '.join(missing)}")
    group: list[tuple[int, dict[str, str]]] = []
    for line, row, problem in _csv_rows(reader):
        if row is None:
            yield Rejected(line, "", problem)
            continue
        name = (row.get("Name") or "").strip()
        if group and name != (group[0][1].get("Name") or "").strip():
            yield _shopify_order(group, channel)
            group = []
        group.append((line, row))
    if group:
        yield _shopify_order(group, channel)


def _shopify_address(first: dict[str, str]) -> str:
    province = (first.get("Billing Province Name") or "").strip()
    code = (first.get("Billing Province") or "").strip()
    if not province and code:
        digits = code.removeprefix("JP-")
        prefecture = prefecture_by_code(digits) if digits.isdigit() else None
        province = prefecture.name if prefecture else code
    parts = [province, first.get("Billing City"), first.get("Billing Address1"), first.get("Billing Address2")]
    return " ".join(p.strip() for p in parts if p and p.strip())


def _shopify_order(group: list[tuple[int, dict[str, str]]], channel: str) -> Order | Rejected:
    line, first = group[0]
    order_id = (first.get("Name") or "").strip()
    key = f"{channel}:{order_id}"
    if not order_id:
        return Rejected(line, key, "Name (the order number) is empty")
    if _bad_bytes(v for _, row in group for v in row.values()):
        return Rejected(line, key, "bytes that are not valid text in the file's encoding")
    try:
        items = tuple(
            OrderLine(sku=(row.get("Lineitem sku") or "").strip() or None, jan=None,
                      name=(row.get("Lineitem name") or "").strip() or None,
                      qty=quantity(row.get("Lineitem quantity"), f"line {n}: Lineitem quantity"),
                      price=yen(row.get("Lineitem price"), f"line {n}: Lineitem price"))
            for n, row in group
        )  # fmt: skip
        discount = yen(first.get("Discount Amount"), "Discount Amount") if (first.get("Discount Amount") or "").strip() else 0
        refunded = yen(first.get("Refunded Amount"), "Refunded Amount") if (first.get("Refunded Amount") or "").strip() else 0
        ordered_at = iso_utc(first.get("Paid at") or first.get("Created at"))
    except ValueError as exc:
        return Rejected(line, key, str(exc))
    customer = {
        "name": first.get("Billing Name") or first.get("Shipping Name") or "",
        "email": first.get("Email") or "",
        "phone": first.get("Billing Phone") or first.get("Phone") or first.get("Shipping Phone") or "",
        "postal_code": first.get("Billing Zip") or "",
        "address": _shopify_address(first),
    }
    status = (first.get("Financial Status") or "").strip().lower() or "pending"
    return Order(line, order_id, channel, ordered_at, status, customer, items, discount, refunded,
                 yes_no(first.get("Accepts Marketing")), [row for _, row in group])


def jsonl_orders(lines: Iterable[str]) -> Iterator[Order | Rejected]:
    """The generic format: one JSON object per line (see docs/members.md §3.2)."""
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Rejected(number, "", f"not JSON ({exc.msg} at column {exc.colno})")
            continue
        try:
            yield _json_order(number, data)
        except ValueError as exc:
            key = f"{data.get('channel')}:{data.get('order_id')}" if isinstance(data, dict) else ""
            yield Rejected(number, key, str(exc))


def _text(data: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise ValueError(f"{key}: missing")
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"{key}: must be a string")
    return value.strip()


def _json_order(number: int, data: Any) -> Order:
    if not isinstance(data, dict):
        raise ValueError("a line must be a JSON object")
    order_id, channel = _text(data, "order_id", True), _text(data, "channel", True)
    assert order_id is not None and channel is not None
    if ":" in channel:
        raise ValueError(f"channel {channel!r} must not contain ':'")
    customer_data = data.get("customer") or {}
    if not isinstance(customer_data, dict):
        raise ValueError("customer: must be an object")
    customer = {k: _text(customer_data, k) or "" for k in CUSTOMER_FIELDS}
    if _text(customer_data, "id"):
        customer["id"] = _text(customer_data, "id") or ""
    raw_lines = data.get("lines")
    if not isinstance(raw_lines, list) or not raw_lines:
        raise ValueError("lines: must be a non-empty list")
    items = []
    for n, item in enumerate(raw_lines, start=1):
        if not isinstance(item, dict):
            raise ValueError(f"lines[{n}]: must be an object")
        sku, jan = _text(item, "sku"), _text(item, "jan")
        if not sku and not jan:
            raise ValueError(f"lines[{n}]: needs sku or jan")
        if jan and (not jan.isdigit() or len(jan) not in (8, 13)):
            raise ValueError(f"lines[{n}].jan: {jan!r} must be 8 or 13 digits")
        price = item.get("price")
        if isinstance(price, bool) or not isinstance(price, (int, str)):
            raise ValueError(f"lines[{n}].price: must be whole yen")
        items.append(OrderLine(sku, jan, _text(item, "name"), quantity(item.get("qty"), f"lines[{n}].qty"),
                               yen(str(price), f"lines[{n}].price")))
    status = (_text(data, "status") or "paid").lower()
    consent = data.get("marketing_consent")
    return Order(number, order_id, channel, iso_utc(_text(data, "ordered_at")), status, customer, tuple(items),
                 0, 0, consent if isinstance(consent, bool) else None, data)
