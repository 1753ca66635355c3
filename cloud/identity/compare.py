"""Field comparisons between two member records, Fellegi–Sunter style.

Each field compares at a level ("exact", "typo", "differ", "missing"...) and each level carries a
weight, roughly log2(m/u): how much likelier the level is for two records of the same person than for
two different people. Missing values weigh 0 (no evidence either way). The weights live in
`MatchWeights` so a chain can tune them; the defaults were set by reasoning about Japanese member
data (a birth date is shared by 1 in ~25,000 people, family members share phones and addresses,
women often change surname at marriage) and checked against the labelled generator in tests/.

Name and reading are compared together: they are two spellings of one fact, and adding their weights
independently would count the same evidence twice.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from tenpo.shared.cleansing import hiragana_to_katakana
from tenpo.shared.prefectures import split_prefecture

from .records import FieldComparison, SourceRecord

__all__ = ["Features", "MatchWeights", "compare", "compute_features", "features", "forget_primed", "learn_readings",
           "osa_distance", "prime_features", "with_learnt_reading"]

# String agreement levels, best first. TYPO is a spelling that sounds or reads the same (ダ/タ, ョ/ヨ,
# ー/ウ, 髙/高); NEAR is one other edit, which in a family is as often a sibling (ユウタ/ユウト,
# 花子/恵子) as a typo, so it is weak evidence against, never a reason to link.
EXACT, TYPO, NEAR, GIVEN, DIFFER = 4, 3, 2, 1, 0

# Old and variant kanji that people and systems swap freely in surnames (NFKC leaves most alone).
_KANJI_VARIANTS = str.maketrans("髙﨑嵜齋齊斉邊邉濵濱澤櫻廣國眞藏德惠曻", "高崎崎斎斎斎辺辺浜浜沢桜広国真蔵徳恵昇")
# Kana that sound alike or differ only in size or a voicing mark a typist dropped.
_PHONETIC = str.maketrans("ヂヅァィゥェォッャュョヮヵヶーヲ", "ジズアイウエオツヤユヨワカケウオ")
_KATAKANA = re.compile(r"[\u30A1-\u30FA\u30FC-\u30FE]+")
_HAS_KANA = re.compile(r"[\u30A1-\u30FA]")
_KANJI_DIGITS = {c: i for i, c in enumerate("〇一二三四五六七八九")}
_CHOME = re.compile(r"([〇一二三四五六七八九十]+)丁目")
_BLOCK = re.compile(r"^(.*?\d+(?:-\d+)*)")
_MOBILE_E164 = re.compile(r"^\+81[789]0")  # 070/080/090: mobile numbers, each one person's


@dataclass(frozen=True, slots=True)
class MatchWeights:
    """Weight of each comparison level; positive is evidence for the same person."""

    name_exact: float = 9.0  # name and reading both equal
    name_exact_kanji_only: float = 7.0
    name_exact_kana_only: float = 6.0  # readings collide more than kanji (ヨウコ: 陽子, 洋子, 容子)
    name_typo: float = 5.0  # readings alike (ダ/タ...) and no kanji to compare
    name_partial: float = 2.5  # one of name/reading equal, the other not
    name_near: float = -2.0  # one edit apart and nothing equal: sibling as often as typo
    name_surname_change: float = 0.0  # same given name, other surname: neutral, other fields decide
    name_differ: float = -6.0
    birth_exact: float = 10.0
    birth_near: float = 2.0  # day and month swapped, or one digit off
    birth_differ: float = -8.0
    phone_exact: float = 8.0
    phone_differ: float = -1.0  # people have a mobile and a home phone
    email_exact: float = 9.0
    email_differ: float = -1.0
    card_exact: float = 12.0
    card_differ: float = -2.0
    address_exact: float = 6.0
    address_same_block: float = 5.0  # same street number, different building/room notation
    address_same_postal: float = 1.5  # a postal code holds a few thousand people
    address_differ: float = -1.5  # people move


@dataclass(frozen=True, slots=True)
class Features:
    """What the comparisons need from a record, computed once per record."""

    name: str | None  # kanji name folded: NFKC, no spaces, variant kanji unified
    surname: str | None  # when the name was written with a space between surname and given name
    given: str | None
    readings: tuple[str, ...]  # katakana readings: the kana field and a name written in kana
    phonetic: tuple[str, ...]  # the readings with voicing marks, small kana and long vowels folded
    birth: str | None
    phone: str | None
    mobile: bool  # the phone is a mobile number: one person's, where a landline is a household's
    email: str | None
    email_verified: bool
    card: str | None
    postal: str | None
    address: str | None  # prefecture dropped, 丁目/番地/号 as hyphens, no spaces
    block: str | None  # address up to the street number (building and room dropped)
    inferred: str | None = None  # reading of the kanji name learnt from other records (see with_learnt_reading)


_COMPARISONS: dict[tuple[str, str, float], FieldComparison] = {}


def _fc(field: str, level: str, weight: float) -> FieldComparison:
    """The one FieldComparison of these values: an import compares millions of pairs from a few dozen."""
    key = (field, level, weight)
    comparison = _COMPARISONS.get(key)
    if comparison is None:
        comparison = _COMPARISONS[key] = FieldComparison(field, level, weight)
    return comparison


def _phonetic(reading: str) -> str:
    decomposed = unicodedata.normalize("NFD", reading.translate(_PHONETIC))
    return decomposed.replace("\u3099", "").replace("\u309a", "")


def _fold_name(text: str) -> str:
    return hiragana_to_katakana(unicodedata.normalize("NFKC", text)).translate(_KANJI_VARIANTS)


def _address_key(address: str) -> str:
    _, rest = split_prefecture(address)
    rest = _CHOME.sub(lambda m: f"{_kanji_number(m.group(1))}-", rest.replace(" ", ""))
    rest = re.sub(r"(\d+)(?:丁目|番地|番|の)", r"\1-", rest)
    rest = re.sub(r"(\d+)号", r"\1", rest)
    rest = re.sub(r"[\-\u2010-\u2015\u2212\u30FC]+", "-", rest)
    return rest.strip("-")


def _kanji_number(text: str) -> int:
    if "十" not in text:
        return int("".join(str(_KANJI_DIGITS[c]) for c in text))
    tens, _, ones = text.partition("十")
    return (_KANJI_DIGITS[tens] if tens else 1) * 10 + (_KANJI_DIGITS[ones] if ones else 0)


# Features computed ahead in another process (an import's cleansing worker), taken by the first `features` call.
_primed: dict[tuple[SourceRecord, frozenset[str]], Features] = {}


def prime_features(record: SourceRecord, ignored_email_domains: frozenset[str], computed: Features) -> None:
    """Hand `features` what `compute_features(record, ignored_email_domains)` gave elsewhere."""
    _primed[(record, ignored_email_domains)] = computed


def forget_primed() -> None:
    """Drop primed features never asked for (records an import did not need to match)."""
    _primed.clear()


@functools.lru_cache(maxsize=1 << 17)  # an import meets the same stored records again and again as candidates
def features(record: SourceRecord, ignored_email_domains: frozenset[str] = frozenset()) -> Features:
    """Comparison features of a record; e-mails at `ignored_email_domains` (marketplace relays) are dropped.
    Cached by value: a SourceRecord is frozen and hashes its member fields (not `custom` or `quality`)."""
    primed = _primed.pop((record, ignored_email_domains), None) if _primed else None
    return primed if primed is not None else compute_features(record, ignored_email_domains)


def compute_features(record: SourceRecord, ignored_email_domains: frozenset[str] = frozenset()) -> Features:
    """`features` without its cache."""
    name = surname = given = None
    readings: list[str] = []
    if record.kana:
        readings.append(record.kana)
    if record.name:
        folded = _fold_name(record.name)
        compact = folded.replace(" ", "").replace("・", "")
        if _KATAKANA.fullmatch(compact):
            readings.append(compact)  # a name written in kana is a reading, not a kanji spelling
        else:
            name = compact
            if " " in folded:
                surname, _, given = folded.partition(" ")
    address = _address_key(record.address) if record.address else None
    block_match = _BLOCK.match(address) if address else None
    return Features(
        name=name, surname=surname, given=given.replace(" ", "") if given else None,
        readings=tuple(dict.fromkeys(readings)), phonetic=tuple(_phonetic(r) for r in dict.fromkeys(readings)),
        birth=record.birth_date, phone=record.phone, mobile=bool(record.phone and _MOBILE_E164.match(record.phone)),
        email=_email_evidence(record.email, ignored_email_domains),
        email_verified="email" in record.verified, card=record.card_no, postal=record.postal_code,
        address=address, block=block_match.group(1) if block_match else address,
    )


def learn_readings(all_features: Sequence[Features]) -> dict[str, str]:
    """Kanji name → reading, learnt from records that carry both, for names read only one way."""
    seen: dict[str, set[str]] = {}
    for f in all_features:
        if f.name and f.readings:
            seen.setdefault(f.name, set()).add(f.readings[0])
    return {name: next(iter(readings)) for name, readings in seen.items() if len(readings) == 1}


def with_learnt_reading(f: Features, readings: Mapping[str, str]) -> Features:
    """The features with a learnt reading when the record has a kanji name but no reading."""
    if f.readings or not f.name or f.name not in readings:
        return f
    return replace(f, inferred=readings[f.name])


def _email_evidence(email: str | None, ignored_domains: frozenset[str]) -> str | None:
    if not email or email.rpartition("@")[2].lower() in ignored_domains:
        return None
    return email.lower()


def osa_distance(a: str, b: str, limit: int = 2) -> int:
    """Optimal string alignment distance (edits and adjacent swaps), capped at `limit`."""
    if a == b:
        return 0
    if abs(len(a) - len(b)) >= limit:
        return limit
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = ca != cb
            best = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if cost and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                best = min(best, previous2[j - 2] + 1)
            current[j] = best
        if min(current) >= limit:
            return limit
        previous2, previous = previous, current
    return min(previous[-1], limit)


def within_one_edit(a: str, b: str) -> bool:
    """`osa_distance(a, b) <= 1` in one pass: equal, or one substitution, insertion, deletion or
    adjacent swap apart. Every name pair of every candidate asks this, so no table is built."""
    if a == b:
        return True
    if len(a) > len(b):
        a, b = b, a
    if len(b) - len(a) > 1:
        return False
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) < len(b):
        return a[i:] == b[i + 1 :]
    return a[i + 1 :] == b[i + 1 :] or (a[i + 2 :] == b[i + 2 :] and i + 1 < len(a) and a[i] == b[i + 1] and a[i + 1] == b[i])


def _common_suffix(a: str, b: str) -> int:
    n = 0
    for ca, cb in zip(reversed(a), reversed(b)):
        if ca != cb:
            break
        n += 1
    return n


def _reading_level(a: str, b: str, phonetic_a: str, phonetic_b: str) -> int:
    if a == b:
        return EXACT
    if phonetic_a == phonetic_b:
        return TYPO
    if min(len(a), len(b)) >= 4 and within_one_edit(a, b):
        return NEAR
    # Same given name under another surname: the reading ends alike (スズキハナコ / ヤマダハナコ).
    if _common_suffix(a, b) >= 3 and a[:2] != b[:2]:
        return GIVEN
    return DIFFER


def _kanji_level(name_a: str, name_b: str, a: Features, b: Features) -> int | None:
    """The kanji names' level; ``name_a`` and ``name_b`` are ``a.name`` and ``b.name``, both set."""
    if name_a == name_b:
        return EXACT
    if bool(_HAS_KANA.search(name_a)) != bool(_HAS_KANA.search(name_b)):
        return None  # 千葉さくら and 千葉桜: a kana given name cannot be compared with a kanji one
    if min(len(name_a), len(name_b)) >= 2 and within_one_edit(name_a, name_b):
        return NEAR
    if a.given and b.given:
        return GIVEN if a.given == b.given and a.surname != b.surname else DIFFER
    if _common_suffix(name_a, name_b) >= 2 and name_a[0] != name_b[0]:
        return GIVEN
    return DIFFER


def _learnt_level(known: Features, learnt: str) -> int | None:
    """A learnt reading against ``known``'s readings; it only ever supports a link: a name can have several."""
    level = max(_reading_level(x, learnt, px, _phonetic(learnt)) for x, px in zip(known.readings, known.phonetic))
    return TYPO if level >= TYPO else None


def name_levels(a: Features, b: Features) -> tuple[int | None, int | None]:
    """(kanji level, reading level); None where one side lacks it."""
    kanji = _kanji_level(a.name, b.name, a, b) if a.name and b.name else None
    reading = None
    if a.readings and b.readings:
        reading = max(_reading_level(x, y, px, py) for x, px in zip(a.readings, a.phonetic)
                      for y, py in zip(b.readings, b.phonetic))
    elif kanji is None and a.inferred and b.readings:  # a learnt reading is set only where there is no other
        reading = _learnt_level(b, a.inferred)
    elif kanji is None and b.inferred and a.readings:
        reading = _learnt_level(a, b.inferred)
    return kanji, reading


def _name(kanji: int | None, reading: int | None, w: MatchWeights) -> FieldComparison:
    present = [level for level in (kanji, reading) if level is not None]
    if not present:
        return _fc("name", "missing", 0.0)
    best, worst = max(present), min(present)
    if worst == EXACT:
        weight = w.name_exact if len(present) == 2 else (w.name_exact_kanji_only if kanji else w.name_exact_kana_only)
        return _fc("name", "exact", weight)
    if best == EXACT and worst == TYPO:
        return _fc("name", "typo", w.name_exact_kanji_only)
    if worst == TYPO:
        return _fc("name", "typo", w.name_typo)
    if best >= TYPO:  # one spelling agrees, the other is off (homophone kanji, a mistyped reading)
        return _fc("name", "partial", w.name_partial)
    if worst == DIFFER:
        return _fc("name", "differ", w.name_differ)
    if best == NEAR:
        return _fc("name", "near", w.name_near)
    return _fc("name", "surname_change", w.name_surname_change)


def _birth(a: str | None, b: str | None, w: MatchWeights) -> FieldComparison:
    if not a or not b:
        return _fc("birth_date", "missing", 0.0)
    if a == b:
        return _fc("birth_date", "exact", w.birth_exact)
    ya, ma, da = a.split("-")
    yb, mb, db = b.split("-")
    swapped = ya == yb and ma == db and da == mb
    one_part_off = sum(x != y for x, y in ((ya, yb), (ma, mb), (da, db))) == 1 and within_one_edit(a, b)
    if swapped or one_part_off:
        return _fc("birth_date", "near", w.birth_near)
    return _fc("birth_date", "differ", w.birth_differ)


def _exact(field: str, a: str | None, b: str | None, same: float, differ: float) -> FieldComparison:
    if not a or not b:
        return _fc(field, "missing", 0.0)
    return _fc(field, "exact", same) if a == b else _fc(field, "differ", differ)


def _phone(a: Features, b: Features, w: MatchWeights) -> FieldComparison:
    """Level "mobile" for the same mobile number (personal), "exact" for the same landline (a household's)."""
    comparison = _exact("phone", a.phone, b.phone, w.phone_exact, w.phone_differ)
    if comparison.level == "exact" and a.mobile:
        return _fc("phone", "mobile", w.phone_exact)
    return comparison


def _email(a: Features, b: Features, w: MatchWeights) -> FieldComparison:
    comparison = _exact("email", a.email, b.email, w.email_exact, w.email_differ)
    if comparison.level == "exact" and (a.email_verified or b.email_verified):
        return _fc("email", "verified", w.email_exact)  # a channel confirmed the person owns it
    return comparison


def _address(a: Features, b: Features, w: MatchWeights) -> FieldComparison:
    if a.address and b.address:
        if a.address == b.address:
            return _fc("address", "exact", w.address_exact)
        if a.block == b.block and (a.postal == b.postal or not a.postal or not b.postal):
            return _fc("address", "same_block", w.address_same_block)
    if a.postal and b.postal and a.postal == b.postal:
        return _fc("address", "same_postal", w.address_same_postal)
    if (a.address and b.address) or (a.postal and b.postal):
        return _fc("address", "differ", w.address_differ)
    return _fc("address", "missing", 0.0)


def compare(a: Features, b: Features, w: MatchWeights) -> tuple[FieldComparison, ...]:
    """Every field comparison between two records, in a fixed order."""
    return (
        _name(*name_levels(a, b), w),
        _birth(a.birth, b.birth, w),
        _phone(a, b, w),
        _email(a, b, w),
        _exact("card_no", a.card, b.card, w.card_exact, w.card_differ),
        _address(a, b, w),
    )
