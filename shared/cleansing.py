"""Cleansing rules for member data, shared by the store registration form and HQ imports.

Every normaliser is a pure function from the raw text a clerk or an import typed to the canonical
form Tenpo stores; anything that cannot be repaired raises `CleansingError`, whose message names
the field and says what is wrong, so the form can show it next to the input.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import phonenumbers

from tenpo.shared.errors import UserError
from tenpo.shared.prefectures import Prefecture, find_prefecture

__all__ = [
    "MEMBER_FIELDS",
    "CleansingError",
    "CleansingRules",
    "cleanse_member_record",
    "hiragana_to_katakana",
    "normalize_address",
    "normalize_birth_date",
    "normalize_card_number",
    "normalize_email",
    "normalize_kana",
    "normalize_name",
    "normalize_phone",
    "normalize_postal_code",
    "search_key",
]


class CleansingError(UserError):
    """One field of a member record that cannot be cleansed; `field` says which one."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def __reduce__(self) -> tuple[type[CleansingError], tuple[str, str]]:
        # keep pickling (multiprocessing, logging) working with two arguments
        return (type(self), (self.field, self.problem))


# Hiragana ぁ..ゖ and the iteration marks ゝゞ sit exactly 0x60 below their katakana twins.
_HIRAGANA_TO_KATAKANA = {code: code + 0x60 for code in range(0x3041, 0x3097)}
_HIRAGANA_TO_KATAKANA.update({0x309D: 0x30FD, 0x309E: 0x30FE})

_WHITESPACE = re.compile(r"\s+")
# Katakana block plus the prolonged sound mark; ・ (U+30FB) separates given and family name in some forms.
_KATAKANA_ONLY = re.compile(r"[\u30A1-\u30FA\u30FC-\u30FE]+")
# Longest first so "さま" is not left half-stripped as "さ" + "ま".
_HONORIFICS = ("御中", "さま", "サマ", "さん", "サン", "ちゃん", "くん", "君", "様", "殿", "氏")
_HONORIFIC_SUFFIX = re.compile(r"\s*(?:" + "|".join(_HONORIFICS) + r")\s*$")
# Hyphens and dashes people type inside postal codes and phone numbers (ASCII, Unicode, long-vowel mark).
_DASHES = re.compile(r"[\-\u2010-\u2015\u2212\u30FC\uFF70\uFE63]")
_EMAIL_LOCAL = re.compile(r"^[^\s@]+$")
_EMAIL_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+[a-z0-9\-]{2,}$")


def hiragana_to_katakana(text: str) -> str:
    """Fold hiragana to katakana, leaving every other character alone."""
    return text.translate(_HIRAGANA_TO_KATAKANA)


def _nfkc(raw: str) -> str:
    return unicodedata.normalize("NFKC", raw)


def _require_text(raw: object, field: str) -> str:
    if not isinstance(raw, str):
        raise CleansingError(field, f"must be text, got {type(raw).__name__}")
    text = _WHITESPACE.sub(" ", _nfkc(raw)).strip()
    if not text:
        raise CleansingError(field, "is empty")
    return text


def normalize_phone(raw: str, region: str = "JP") -> str:
    """Phone number in E.164 ("+819012345678"); accepts 090-1234-5678, ０９０…, +81 90 1234 5678."""
    text = _DASHES.sub("-", _require_text(raw, "phone"))
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise CleansingError("phone", f"{raw.strip()!r} is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise CleansingError("phone", f"{raw.strip()!r} is not a valid phone number for {region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    """E-mail trimmed, with the domain lower-cased (the local part is case-sensitive by RFC 5321)."""
    text = _require_text(raw, "email")
    local, at, domain = text.rpartition("@")
    if not at or not local or not _EMAIL_LOCAL.match(local):
        raise CleansingError("email", f"{text!r} is not an e-mail address")
    domain = domain.lower().rstrip(".")
    if not _EMAIL_DOMAIN.match(domain):
        raise CleansingError("email", f"{text!r} has no valid domain after @")
    return f"{local}@{domain}"


def normalize_name(raw: str) -> str:
    """Name in NFKC with whitespace collapsed and trailing honorifics (様, さん, 殿...) removed."""
    text = _require_text(raw, "name")
    stripped = _HONORIFIC_SUFFIX.sub("", text).strip()
    # A name that is nothing but an honorific ("様") stays as typed rather than becoming empty.
    return stripped or text


def normalize_kana(raw: str) -> str:
    """Name reading in full-width katakana without spaces; hiragana and half-width kana are converted."""
    text = _require_text(raw, "kana")
    text = _HONORIFIC_SUFFIX.sub("", hiragana_to_katakana(text))
    reading = text.replace(" ", "").replace("・", "")
    if not _KATAKANA_ONLY.fullmatch(reading):
        raise CleansingError("kana", f"{raw.strip()!r} must be written in kana only")
    return reading


def search_key(raw: str) -> str:
    """Key for prefix search by name or reading: NFKC, case-folded, hiragana as katakana, no spaces."""
    return _WHITESPACE.sub("", hiragana_to_katakana(_nfkc(raw).casefold()))


def normalize_postal_code(raw: str) -> str:
    """Japanese postal code as 7 digits; accepts 〒, full-width digits, spaces and any hyphen."""
    text = _require_text(raw, "postal_code")
    digits = _DASHES.sub("", text).replace("〒", "").replace(" ", "")
    if not (len(digits) == 7 and digits.isascii() and digits.isdigit()):
        raise CleansingError("postal_code", f"{raw.strip()!r} is not a 7-digit postal code")
    return digits


# --- dates ---------------------------------------------------------------------------------------

# Japanese era (和暦) first years; birth dates on paper forms are still often written 昭和55年3月1日 / S55.3.1.
_ERAS = {"明治": 1868, "M": 1868, "大正": 1912, "T": 1912, "昭和": 1926, "S": 1926,
         "平成": 1989, "H": 1989, "令和": 2019, "R": 2019}
_WAREKI = re.compile(r"^(明治|大正|昭和|平成|令和|[MTSHR])\s*(元|\d{1,2})\s*[年./\-]\s*(\d{1,2})\s*[月./\-]\s*(\d{1,2})\s*日?$")
_WESTERN = re.compile(r"^(\d{4})\s*[年./\-]?\s*(\d{1,2})\s*[月./\-]?\s*(\d{1,2})\s*日?$")


def normalize_birth_date(raw: str, today: date | None = None) -> str:
    """Birth date as ISO "YYYY-MM-DD"; accepts 1980/3/1, 1980年3月1日, 19800301, 昭和55年3月1日, S55.3.1.

    With `today`, dates in the future or more than 130 years back are refused.
    """
    text = _require_text(raw, "birth_date").upper()
    if match := _WAREKI.match(text):
        era, year, month, day = match.groups()
        ymd = (_ERAS[era] + (1 if year == "元" else int(year)) - 1, int(month), int(day))
    elif match := _WESTERN.match(text):
        ymd = (int(match[1]), int(match[2]), int(match[3]))
    else:
        raise CleansingError("birth_date", f"{raw.strip()!r} is not a date (write e.g. 1980-03-01)")
    try:
        born = date(*ymd)
    except ValueError:
        raise CleansingError("birth_date", f"{raw.strip()!r} is not a real calendar date") from None
    if today is not None and not (today.year - 130 <= born.year and born <= today):
        raise CleansingError("birth_date", f"{born.isoformat()} is not a plausible birth date")
    return born.isoformat()


def normalize_card_number(raw: str, pattern: str = r"\d{8,20}") -> str:
    """Member card number as its digits (hyphens and spaces dropped), checked against `pattern`."""
    digits = _DASHES.sub("", _require_text(raw, "card_no")).replace(" ", "")
    if not re.fullmatch(pattern, digits):
        raise CleansingError("card_no", f"{raw.strip()!r} is not a card number of this chain")
    return digits


def normalize_address(raw: str) -> tuple[str, Prefecture | None]:
    """Address in NFKC with whitespace collapsed, and the prefecture recognised at its start."""
    text = _require_text(raw, "address")
    return text, find_prefecture(text)


# --- whole records -------------------------------------------------------------------------------

MEMBER_FIELDS = ("name", "kana", "email", "phone", "postal_code", "address", "birth_date", "card_no")


@dataclass(frozen=True, slots=True)
class CleansingRules:
    """Field-level rules a chain configures; the defaults suit a store counter registration."""

    required: frozenset[str] = frozenset({"name"})
    phone_region: str = "JP"
    mobile_only: bool = False  # for chains that send codes by SMS
    card_number_pattern: str = r"\d{8,20}"
    max_name_length: int = 60
    require_prefecture: bool = False  # refuse addresses whose prefecture cannot be recognised
    # At least one way to reach the person: a form that needs a phone OR an e-mail lists both here.
    contact_any_of: frozenset[str] = frozenset()


_MOBILE_TYPES = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}


def _cleanse_field(name: str, raw: str, rules: CleansingRules, today: date | None) -> dict[str, object]:
    if name == "name":
        value = normalize_name(raw)
        if len(value) > rules.max_name_length:
            raise CleansingError("name", f"is longer than {rules.max_name_length} characters")
        return {"name": value}
    if name == "kana":
        return {"kana": normalize_kana(raw)}
    if name == "email":
        return {"email": normalize_email(raw)}
    if name == "phone":
        value = normalize_phone(raw, rules.phone_region)
        if rules.mobile_only and phonenumbers.number_type(phonenumbers.parse(value)) not in _MOBILE_TYPES:
            raise CleansingError("phone", f"{raw.strip()!r} is not a mobile number")
        return {"phone": value}
    if name == "postal_code":
        return {"postal_code": normalize_postal_code(raw)}
    if name == "address":
        text, prefecture = normalize_address(raw)
        if prefecture is None and rules.require_prefecture:
            raise CleansingError("address", f"{text!r} does not start with a prefecture")
        # A separate prefecture column (kept in `clean`) stands when the address does not name one.
        return {"address": text, "prefecture": prefecture.name} if prefecture else {"address": text}
    if name == "birth_date":
        return {"birth_date": normalize_birth_date(raw, today)}
    if name == "card_no":
        return {"card_no": normalize_card_number(raw, rules.card_number_pattern)}
    raise AssertionError(name)


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def cleanse_member_record(
    record: Mapping[str, object], rules: CleansingRules = CleansingRules(), *, today: date | None = None
) -> tuple[dict[str, object], list[CleansingError]]:
    """Cleanse every member field at once, collecting one error per bad field (the form shows them all).

    The clean dict has every field of MEMBER_FIELDS (None when empty or bad) plus `prefecture`;
    any other key (source, source_id, custom fields of the chain) is carried through unchanged.
    """
    clean: dict[str, object] = {key: value for key, value in record.items() if key not in MEMBER_FIELDS}
    clean.update({field: None for field in MEMBER_FIELDS})
    clean.setdefault("prefecture", None)
    errors: list[CleansingError] = []
    for field in MEMBER_FIELDS:
        raw = record.get(field)
        if _is_blank(raw):
            if field in rules.required:
                errors.append(CleansingError(field, "is required"))
            continue
        try:
            clean.update(_cleanse_field(field, raw if isinstance(raw, str) else str(raw), rules, today))
        except CleansingError as error:
            errors.append(error)
    if rules.contact_any_of and all(clean.get(field) is None for field in rules.contact_any_of):
        if not any(error.field in rules.contact_any_of for error in errors):
            fields = " or ".join(sorted(rules.contact_any_of))
            errors.append(CleansingError(fields, "at least one is required"))
    return clean, errors
