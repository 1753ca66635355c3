"""A messy legacy member file with a truth file, for import tests and the import benchmark (deterministic by seed).

Built on the labelled people of tests/identity_data.py (households sharing a landline or a family
e-mail, kana/kanji/half-width spellings, full-width digits, 和暦, typos, old surnames and addresses),
spread over four channels the way a chain's systems hold them: store registrations, the web shop,
the app and a legacy POS (whose numbers often lost their trunk 0). Then the damage a real export carries is done to some
fields, each kind logged with the value a safe correction must give back:

    email_double_at        u46627@@docomo.ne.jp
    email_domain_comma     u12821@EXAMPLE,COM
    email_domain_space     taro@gmail .com
    email_domain_typo      hanako@docomo.ne.jo, ken@gmial.com
    fullwidth              ｔａｒｏ＠ｇｍａｉｌ．ｃｏｍ
    phone_leading_zero     9012345678 (a spreadsheet ate the trunk 0)
    unverified             04-9164-7881: a home phone in a range the phone library does not know
    flagged                taro.gmail.com, 090-1234, 1990-13-45, a reading in romaji: no safe repair

`write_messy_file` writes the CSV `tenpo cloud import members` reads and returns the truth: per record
its person and the damage done. Names, towns and numbers are invented.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

import phonenumbers

from tenpo.shared.cleansing import EMAIL_DOMAIN_TYPOS
from tests.identity_data import WIDE, _Generator, labelled_households

COLUMNS = ("source", "source_id", "name", "kana", "email", "phone", "postal_code", "address", "birth_date", "card_no",
           "updated_at", "verified")  # fmt: skip
TYPO_OF = {right: typo for typo, right in sorted(EMAIL_DOMAIN_TYPOS.items(), key=lambda kv: len(kv[0]))}
FULL = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)})


@dataclass(frozen=True, slots=True)
class Damage:
    field: str
    kind: str  # a correction rule name, "unverified" or "flagged"
    expected: str | None  # the clean value a correction must give (None: the field is flagged)


@dataclass(frozen=True, slots=True)
class TruthRow:
    source: str
    source_id: str
    person_id: int
    damage: tuple[Damage, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.source_id)


# Channel: (share of records, and the chance of kana, phone, address, e-mail, birth date, card on a record)
# following what each form asks: the app checks the mobile by SMS and the e-mail by a link, the web shop
# needs an address to deliver, the store counter asks for everything, the old POS was keyed by phone number and card.
PROFILES = {
    "store": (30, (0.9, 0.95, 0.85, 0.3, 0.85, 0.9)),
    "web": (35, (0.6, 1.0, 1.0, 1.0, 0.4, 0.0)),
    "app": (20, (0.7, 1.0, 0.3, 0.9, 0.6, 0.3)),
    "pos": (15, (0.8, 1.0, 0.5, 0.0, 0.7, 0.95)),
}


class _Messy(_Generator):
    """identity_data's people in this chain's channels, with households whose landline is in a range the
    phone library does not know."""

    def record(self, p, when: float) -> dict[str, str]:  # type: ignore[no-untyped-def]
        rng = self.rng
        source = rng.choices(list(PROFILES), weights=[share for share, _ in PROFILES.values()])[0]
        kana_p, phone_p, address_p, email_p, birth_p, card_p = PROFILES[source][1]
        before = when < p.changed_at
        surname = p.old_surname if before and p.old_surname else p.surname
        place = p.old_place if before and p.old_place else p.place
        raw = {"source": source, "source_id": self.next_id(source), "name": self.name(surname, p.given, source),
               "updated_at": f"{2015 + int(when * 10)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00Z"}
        if rng.random() < kana_p:
            raw["kana"] = self.kana(surname[1] + rng.choice(["", " ", "\u3000"]) + p.given[1])
        if rng.random() < phone_p and (phone := self.phone(p)):
            if source == "app" and p.mobile:  # the app checks the number by SMS: always the mobile
                phone = p.mobile
            raw["phone"] = phone
        if rng.random() < address_p:
            raw["postal_code"], raw["address"] = self.address(place)
        if rng.random() < email_p and (email := self.pick_email(p)):
            raw["email"] = email
            raw["verified"] = "email" if source in ("web", "app") and rng.random() < 0.9 else ""
        if rng.random() < birth_p:
            raw["birth_date"] = self.birth(p.birth)
        if p.card and rng.random() < card_p:
            raw["card_no"] = p.card if rng.random() < 0.7 else f"{p.card[:4]}-{p.card[4:8]}-{p.card[8:]}"
        return raw

    def landline(self) -> str:
        if self.rng.random() < 0.12:
            while True:
                number = "049" + "".join(str(self.rng.randrange(10)) for _ in range(7))
                parsed = phonenumbers.parse(number, "JP")
                if not phonenumbers.is_valid_number(parsed) and number not in self.used_numbers:
                    self.used_numbers.add(number)
                    return number
        return super().landline()


def _email_damage(rng: random.Random, email: str) -> tuple[str, Damage] | None:
    local, _, domain = email.strip().partition("@")
    domain = domain.lower()
    clean = f"{local}@{domain}"
    roll = rng.random()
    if roll < 0.2:
        return f"{local}@@{domain}", Damage("email", "email_double_at", clean)
    if roll < 0.4:
        return f"{local}@{domain.replace('.', ',', 1).upper()}", Damage("email", "email_domain_comma", clean)
    if roll < 0.5:
        head, _, tail = domain.rpartition(".")
        return f"{local}@{head} .{tail}", Damage("email", "email_domain_space", clean)
    if roll < 0.75 and domain in TYPO_OF:
        return f"{local}@{TYPO_OF[domain]}", Damage("email", "email_domain_typo", clean)
    if roll < 0.9:
        return clean.translate(FULL), Damage("email", "fullwidth", clean)
    return f"{local}.{domain}", Damage("email", "flagged", None)


def _phone_damage(rng: random.Random, phone: str) -> tuple[str, Damage] | None:
    digits = "".join(c for c in phone.translate(str.maketrans("０１２３４５６７８９", "0123456789")) if c.isdigit())
    if phone.startswith("+") or len(digits) != 11 or digits[:3] not in ("070", "080", "090"):
        return None
    e164 = "+81" + digits[1:]
    if rng.random() < 0.7:
        return digits[1:], Damage("phone", "phone_leading_zero", e164)
    return f"{digits[:3]}-{digits[3:7]}", Damage("phone", "flagged", None)


def messy_rows(seed: int = 16, min_records: int = 3000, damage_rate: float = 0.06) -> list[tuple[dict[str, str], TruthRow]]:
    """Raw rows (column -> text) with their truth. About `damage_rate` of e-mails, phones, birth dates and
    readings are damaged; a home phone in an unknown range is damage of its own (it is the person's number)."""
    rng = random.Random(seed * 7919)
    rows = []
    for item in labelled_households(_Messy(seed), min_records):
        raw = dict(item.raw)
        source = raw["source"]
        raw["source_id"] = f"{source.upper()}-{raw['source_id'][1:]}"
        damage: list[Damage] = []
        if raw.get("email") and rng.random() < damage_rate:
            raw["email"], done = _email_damage(rng, raw["email"]) or (raw["email"], None)
            damage += [done] if done else []
        phone = raw.get("phone")
        if phone:
            digits = "".join(c for c in phone.translate(str.maketrans("０１２３４５６７８９", "0123456789")) if c.isdigit())
            if digits.startswith("049") and len(digits) == 10:
                damage.append(Damage("phone", "unverified", "+81" + digits[1:]))
            elif rng.random() < damage_rate * (3 if source == "pos" else 1) and (hit := _phone_damage(rng, phone)):
                raw["phone"], done = hit
                damage.append(done)
            elif rng.random() < damage_rate / 2 and not phone.startswith("+"):
                raw["phone"] = phone.translate(WIDE)  # some channels type every digit full-width
        if raw.get("birth_date") and rng.random() < damage_rate / 2:
            raw["birth_date"] = rng.choice(["1990-13-45", "不明", "0000-00-00", "19801340"])
            damage.append(Damage("birth_date", "flagged", None))
        if raw.get("kana") and rng.random() < damage_rate / 2:
            raw["kana"] = "Yamada Taro" if rng.random() < 0.5 else "山田"  # a reading the form never checked
            damage.append(Damage("kana", "flagged", None))
        rows.append(({column: raw.get(column, "") for column in COLUMNS},
                     TruthRow(raw["source"], raw["source_id"], item.person_id, tuple(damage))))
    return rows


def write_messy_file(path: Path, seed: int = 16, min_records: int = 3000, damage_rate: float = 0.06) -> list[TruthRow]:
    """The member CSV at `path` (UTF-8) and, beside it as `<stem>.truth.csv`, the truth; returns the truth."""
    rows = messy_rows(seed, min_records, damage_rate)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, COLUMNS)
        writer.writeheader()
        writer.writerows(raw for raw, _ in rows)
    with path.with_name(f"{path.stem}.truth.csv").open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(("source", "source_id", "person_id", "damage"))
        for _, truth in rows:
            writer.writerow((truth.source, truth.source_id, truth.person_id,
                             ";".join(f"{d.field}:{d.kind}" for d in truth.damage)))  # fmt: skip
    return [truth for _, truth in rows]
