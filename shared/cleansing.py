"""Cleansing rules for member data, shared by the store registration form and HQ imports.

Every normaliser is a pure function from the raw text a clerk or an import typed to the canonical
form Tenpo stores; anything that cannot be repaired raises `CleansingError`, whose message names
the field and says what is wrong, so the form can show it next to the input.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

import phonenumbers

from tenpo.shared.errors import UserError
from tenpo.shared.prefectures import Prefecture, find_prefecture
from tenpo.shared.spreadsheet import hides_formula

__all__ = [
    "CORRECTED",
    "EMAIL_DOMAIN_TYPOS",
    "FIELD_STATUSES",
    "FLAGGED",
    "MEMBER_FIELDS",
    "MISSING",
    "UNVERIFIED",
    "VALID",
    "CleansingError",
    "CleansingRules",
    "Corrected",
    "FieldQuality",
    "assess_member_record",
    "cleanse_member_record",
    "correct_email",
    "correct_phone",
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
    """E-mail trimmed, with the domain lower-cased (the local part is case-sensitive by RFC 5321) and
    the safe repairs of `correct_email` made (a doubled @, a known domain typo...)."""
    return correct_email(raw).value


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


def _is_mobile(e164: str) -> bool:
    return phonenumbers.number_type(phonenumbers.parse(e164)) in _MOBILE_TYPES


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
        if rules.mobile_only and not _is_mobile(value):
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


# --- imports: correct what is safe, flag the rest --------------------------------------------------
#
# An import keeps every record that has a source id. Each member field ends in one of five states,
# recorded beside the record as its field quality (docs/members.md, "Data quality"):
#   valid       the value as typed was fine (canonical spelling only: E.164 phone, 7-digit postal code...)
#   corrected   a safe repair was made; `raw` is what was typed, `rule` names the repair(s)
#   unverified  kept and matched on, but could not be verified (a phone in a range the library does
#               not know); `raw` and `reason` say why
#   flagged     invalid or suspicious: the clean value is None (left out of matching and the golden
#               record), `raw` keeps what was typed and `reason` says what is wrong
#   missing     nothing was given

VALID, CORRECTED, UNVERIFIED, FLAGGED, MISSING = "valid", "corrected", "unverified", "flagged", "missing"
FIELD_STATUSES = (VALID, CORRECTED, UNVERIFIED, FLAGGED, MISSING)


@dataclass(frozen=True, slots=True)
class FieldQuality:
    """How one field of a record fared in cleansing: its status, the raw text, the rule and the reason."""

    status: str
    raw: str | None = None  # as typed; set for corrected, unverified and flagged
    rule: str | None = None  # correction rule names joined by "+", e.g. "fullwidth+email_double_at"
    reason: str | None = None  # why the value is flagged or unverified

    def as_json(self) -> dict[str, str]:
        data = {"status": self.status, "raw": self.raw, "rule": self.rule, "reason": self.reason}
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> FieldQuality:
        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        return cls(text("status") or VALID, text("raw"), text("rule"), text("reason"))


# Misspelt domains of the big Japanese carriers and webmail services, each to the domain meant. Only
# misspellings that are not themselves a mail domain anyone uses (documented in docs/members.md).
EMAIL_DOMAIN_TYPOS: Mapping[str, str] = MappingProxyType({
    "docomo.ne.jo": "docomo.ne.jp", "docomo.ne.pj": "docomo.ne.jp", "docomo.nejp": "docomo.ne.jp",
    "docomo.ne.j": "docomo.ne.jp", "docono.ne.jp": "docomo.ne.jp", "docomo.en.jp": "docomo.ne.jp",
    "ezweb.ne.jo": "ezweb.ne.jp", "ezweb.ne.pj": "ezweb.ne.jp", "ezweb.nejp": "ezweb.ne.jp", "ezwed.ne.jp": "ezweb.ne.jp",
    "softbank.ne.jo": "softbank.ne.jp", "softbank.ne.pj": "softbank.ne.jp", "sofbank.ne.jp": "softbank.ne.jp",
    "softbak.ne.jp": "softbank.ne.jp",
    "yahoo.co.jo": "yahoo.co.jp", "yahoo.co.pj": "yahoo.co.jp", "yahoo.cojp": "yahoo.co.jp", "yaho.co.jp": "yahoo.co.jp",
    "yahooo.co.jp": "yahoo.co.jp", "yahoo.co.j": "yahoo.co.jp",
    "gmial.com": "gmail.com", "gmai.com": "gmail.com", "gamil.com": "gmail.com", "gmaill.com": "gmail.com",
    "gmail.con": "gmail.com", "gmail.cm": "gmail.com", "gmail.co": "gmail.com", "gmail.om": "gmail.com",
    "hotmial.com": "hotmail.com", "hotmai.com": "hotmail.com", "hotmail.con": "hotmail.com", "hotmail.co": "hotmail.com",
    "icloud.co": "icloud.com", "icloud.con": "icloud.com", "iclod.com": "icloud.com", "icoud.com": "icloud.com",
    "outlook.jo": "outlook.jp", "outlook.con": "outlook.com", "outlok.com": "outlook.com",
})  # fmt: skip

_DOMAIN_SEPARATOR_TYPOS = re.compile(r"[,、。]")
_SPACE_AROUND_AT = re.compile(r"\s*@\s*")
_PHONE_SEPARATORS = re.compile(r"[\s()\-]")
_MOBILE_PREFIX = re.compile(r"^0[5789]0")  # mobile and IP-phone ranges: all known to the library


@dataclass(frozen=True, slots=True)
class Corrected:
    """A value after safe corrections, and the rules that changed it (empty when typed right)."""

    value: str
    rules: tuple[str, ...] = ()
    unverified: str | None = None  # why it could not be verified, when it is kept anyway


def _fullwidth(raw: str) -> tuple[str, ...]:
    return ("fullwidth",) if any(0xFF01 <= ord(c) <= 0xFF5E or c == "\u3000" for c in raw) else ()


def correct_email(raw: str) -> Corrected:
    """An e-mail with safe repairs: full-width characters, a doubled @, spaces around @ or in the domain,
    commas (、。) for dots and doubled dots in the domain, a well-known domain typo (EMAIL_DOMAIN_TYPOS).
    The local part is never changed beyond width. Raises CleansingError for what cannot be repaired."""
    rules = list(_fullwidth(raw if isinstance(raw, str) else ""))
    text = _require_text(raw, "email")
    if "@@" in text:
        text = re.sub("@+", "@", text)
        rules.append("email_double_at")
    spaced = _SPACE_AROUND_AT.sub("@", text)
    local, at, domain = spaced.rpartition("@")
    if spaced != text or " " in domain:
        domain = domain.replace(" ", "")
        rules.append("email_domain_space")
    if _DOMAIN_SEPARATOR_TYPOS.search(domain):
        domain = _DOMAIN_SEPARATOR_TYPOS.sub(".", domain)
        rules.append("email_domain_comma")
    if ".." in domain:
        domain = re.sub(r"\.{2,}", ".", domain)
        rules.append("email_domain_dots")
    domain = domain.lower().rstrip(".")
    if domain in EMAIL_DOMAIN_TYPOS:
        domain = EMAIL_DOMAIN_TYPOS[domain]
        rules.append("email_domain_typo")
    if not at or not local or not _EMAIL_LOCAL.match(local):
        raise CleansingError("email", f"{text!r} is not an e-mail address")
    if not _EMAIL_DOMAIN.match(domain):
        raise CleansingError("email", f"{text!r} has no valid domain after @")
    return Corrected(f"{local}@{domain}", tuple(rules))


def correct_phone(raw: str, region: str = "JP") -> Corrected:
    """A phone number in E.164 with safe repairs: full-width digits, a trunk 0 lost to a spreadsheet
    (9012345678 -> 090-1234-5678). A number of plausible length in a range the phone library does not
    know (04-9164-7881) is kept `unverified`: exact matching on its digits still finds the person."""
    rules = list(_fullwidth(raw if isinstance(raw, str) else ""))
    text = _DASHES.sub("-", _require_text(raw, "phone"))
    digits = _PHONE_SEPARATORS.sub("", text)
    verdict = _phone_verdict(digits, region)
    if verdict is None:
        raise CleansingError("phone", f"{raw.strip()!r} is not a phone number")
    e164, valid, possible = verdict
    if valid:
        if digits.isdigit() and not digits.startswith("0"):
            rules.append("phone_leading_zero")
        return Corrected(e164, tuple(rules))
    national = digits if digits.startswith("0") else ""
    if national.isdigit() and 10 <= len(national) <= 11 and not _MOBILE_PREFIX.match(national) and possible:
        return Corrected(e164, tuple(rules), unverified="a number range the phone library does not know")
    raise CleansingError("phone", f"{raw.strip()!r} is not a valid phone number for {region}")


@functools.lru_cache(maxsize=1 << 16)  # one number typed five ways is parsed once
def _phone_verdict(digits: str, region: str) -> tuple[str, bool, bool] | None:
    """(E.164, valid, possible) of a number without separators, or None when it is not a number at all."""
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, phonenumbers.is_valid_number(number), phonenumbers.is_possible_number(number)


@functools.lru_cache(maxsize=1 << 16)  # imports repeat values (a person's phone in every channel): parse once
def _assess_field(name: str, raw: str, rules: CleansingRules, today: date | None) -> tuple[dict[str, object], FieldQuality]:
    if name == "email":
        corrected = correct_email(raw)
        values: dict[str, object] = {"email": corrected.value}
    elif name == "phone":
        corrected = correct_phone(raw, rules.phone_region)
        if rules.mobile_only and (corrected.unverified or not _is_mobile(corrected.value)):
            raise CleansingError("phone", f"{raw.strip()!r} is not a mobile number")
        values = {"phone": corrected.value}
    else:
        values = _cleanse_field(name, raw, rules, today)
        corrected = Corrected(str(values[name]), _fullwidth(raw) if name in _ASCII_FIELDS else ())
    if corrected.unverified:
        return values, FieldQuality(UNVERIFIED, raw, "+".join(corrected.rules) or None, corrected.unverified)
    if corrected.rules:
        return values, FieldQuality(CORRECTED, raw, "+".join(corrected.rules))
    return values, FieldQuality(VALID)


_ASCII_FIELDS = frozenset({"postal_code", "birth_date", "card_no"})


def assess_member_record(
    record: Mapping[str, object], rules: CleansingRules = CleansingRules(), *, today: date | None = None
) -> tuple[dict[str, object], dict[str, FieldQuality]]:
    """Cleanse for an import: every field corrected where safe, flagged (value None, raw kept) where not.

    Returns the clean dict (the shape `cleanse_member_record` gives) and a FieldQuality per member
    field. Nothing here refuses a record: deciding that is the caller's (an import needs only a source id).
    """
    clean: dict[str, object] = {key: value for key, value in record.items() if key not in MEMBER_FIELDS}
    clean.update({field: None for field in MEMBER_FIELDS})
    clean.setdefault("prefecture", None)
    quality: dict[str, FieldQuality] = {}
    for field in MEMBER_FIELDS:
        value = record.get(field)
        if _is_blank(value):
            quality[field] = FieldQuality(MISSING, reason="is required" if field in rules.required else None)
            continue
        raw = value if isinstance(value, str) else str(value)
        if "\ufffd" in raw:  # the replacement character a decoder leaves for bytes it could not read
            quality[field] = FieldQuality(FLAGGED, raw, reason="bytes that are not valid text in the file's encoding")
            continue
        if hides_formula(raw):  # trimming "\t=x" would hand a spreadsheet "=x": keep it raw, flagged
            quality[field] = FieldQuality(FLAGGED, raw, reason="blanks before a spreadsheet formula (= + - @)")
            continue
        try:
            values, quality[field] = _assess_field(field, raw, rules, today)
        except CleansingError as error:
            quality[field] = FieldQuality(FLAGGED, raw, reason=error.problem)
            continue
        clean.update(values)  # a copy: the cached dict is never handed out
    return clean, quality
