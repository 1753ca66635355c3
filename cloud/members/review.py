"""The review queue: pairs of source records scored between the review and the match threshold, with
real evidence (tenpo.cloud.identity.worth_review: not a namesake with another phone, not a household).

Resolution (resolve.py) queues every possible match it sees; a person accepts or rejects it
(review_actions.py). Items are keyed by the two source records, so a decision outlives merges,
unmerges and re-imports: a decided pair is never queued again, and a rejected pair is never joined
automatically either. Items hold the comparisons (levels and weights), never the values: the values
are read from the source records when the item is shown, masked (an erased record shows nothing).
"""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tenpo.cloud.db import Central
from tenpo.cloud.identity import FieldComparison, MergeDecision, RecordKey
from tenpo.shared.errors import UserError

from .store import find_source

__all__ = ["ReviewItem", "get_item", "mask", "pending_items", "queue_possible", "queue_possible_many", "rejected_partners",
           "same_members_pending"]

_SHOWN_FIELDS = ("name", "kana", "birth_date", "phone", "email", "card_no", "postal_code", "address")


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """One possible match as a person sees it: both members, the score and the comparisons that decided it."""

    item_id: int
    left: RecordKey
    right: RecordKey
    left_member: str | None  # golden id now (None: the record was erased)
    right_member: str | None
    score: float
    comparisons: tuple[tuple[str, str, float], ...]  # (field, level, weight), strongest evidence first
    status: str
    note: str | None = None
    decided_by: str | None = None
    left_values: Mapping[str, str] | None = None  # masked
    right_values: Mapping[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.item_id, "status": self.status, "score": self.score,
            "left": {"record": ":".join(self.left), "member_id": self.left_member, "values": dict(self.left_values or {})},
            "right": {"record": ":".join(self.right), "member_id": self.right_member,
                      "values": dict(self.right_values or {})},
            "comparisons": [{"field": f, "level": level, "weight": w} for f, level, w in self.comparisons],
            "note": self.note, "decided_by": self.decided_by,
        }  # fmt: skip


def _ordered(a: RecordKey, b: RecordKey) -> tuple[RecordKey, RecordKey]:
    return (a, b) if a <= b else (b, a)


def queue_possible(db: Central, decisions: Iterable[MergeDecision], now: float) -> int:
    """Queue possible matches not seen before; a known pair keeps its item (and its decision). Returns how many are new."""
    added = 0
    for row in _review_rows(decisions, now):
        added += max(db.execute(_QUEUE, row).rowcount, 0)
    return added


def queue_possible_many(db: Central, decisions: Iterable[MergeDecision], now: float) -> None:
    """queue_possible in one batch (an import's chunk), without the count."""
    db.executemany(_QUEUE, _review_rows(decisions, now))


_QUEUE = ("INSERT INTO member_reviews(left_source, left_source_id, right_source, right_source_id, score, comparisons,"
          " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
          " ON CONFLICT(left_source, left_source_id, right_source, right_source_id) DO NOTHING")  # fmt: skip


def _review_rows(decisions: Iterable[MergeDecision], now: float) -> list[tuple[Any, ...]]:
    rows = []
    for decision in decisions:
        left, right = _ordered(decision.left, decision.right)
        if left != right:
            rows.append((*left, *right, decision.score, _comparisons_json(decision.comparisons), now, now))
    return rows


@functools.lru_cache(maxsize=1 << 12)  # a large import queues hundreds of thousands of pairs, in a few hundred patterns
def _comparisons_json(comparisons: tuple[FieldComparison, ...]) -> str:
    return json.dumps([[c.field, c.level, c.weight] for c in comparisons], ensure_ascii=False)


def rejected_partners(db: Central, key: RecordKey) -> set[RecordKey]:
    """Source records a person said are not the same person as `key`: never joined automatically."""
    rows = db.all(
        "SELECT right_source, right_source_id FROM member_reviews WHERE status = 'rejected'"
        " AND left_source = ? AND left_source_id = ? UNION"
        " SELECT left_source, left_source_id FROM member_reviews WHERE status = 'rejected'"
        " AND right_source = ? AND right_source_id = ?", (*key, *key),
    )  # fmt: skip
    return {(str(s), str(sid)) for s, sid in rows}


_COLUMNS = ("id, left_source, left_source_id, right_source, right_source_id, score, comparisons, status, note,"
            " decided_by")  # fmt: skip


def _item(db: Central, row: tuple[Any, ...], with_values: bool) -> ReviewItem:
    left, right = (str(row[1]), str(row[2])), (str(row[3]), str(row[4]))
    found = [find_source(db, *key) for key in (left, right)]
    comparisons = sorted((tuple(c) for c in json.loads(row[6])), key=lambda c: -abs(float(c[2])))
    values = [_masked_values(s.record) if s and with_values else None for s in found]
    return ReviewItem(
        int(row[0]), left, right, found[0].member_id if found[0] else None, found[1].member_id if found[1] else None,
        float(row[5]), tuple((str(f), str(level), float(w)) for f, level, w in comparisons), str(row[7]),
        row[8], row[9], values[0], values[1],
    )  # fmt: skip


def pending_items(db: Central, *, limit: int | None = None, with_values: bool = True) -> list[ReviewItem]:
    """Pending items still worth asking, best score first: both records exist and are still in two
    members, and one item per pair of members (the best; a decision on it covers the others)."""
    items: list[ReviewItem] = []
    asked: set[frozenset[str]] = set()
    for row in db.all(f"SELECT {_COLUMNS} FROM member_reviews WHERE status = 'pending' ORDER BY score DESC, id"):
        item = _item(db, row, with_values)
        members = frozenset((item.left_member or "", item.right_member or ""))
        if item.left_member and item.right_member and len(members) == 2 and members not in asked:
            asked.add(members)
            items.append(item)
            if limit is not None and len(items) >= limit:
                break
    return items


def same_members_pending(db: Central, a: str, b: str) -> list[int]:
    """Pending items whose two records are now in members `a` and `b` (either way round)."""
    rows = db.all(
        "SELECT r.id FROM member_reviews r"
        " JOIN member_sources x ON x.source = r.left_source AND x.source_id = r.left_source_id"
        " JOIN member_sources y ON y.source = r.right_source AND y.source_id = r.right_source_id"
        " WHERE r.status = 'pending' AND ((x.member_id = ? AND y.member_id = ?) OR (x.member_id = ? AND y.member_id = ?))",
        (a, b, b, a),
    )  # fmt: skip
    return [int(r[0]) for r in rows]


def pending_count(db: Central) -> int:
    return len(pending_items(db, with_values=False))


def get_item(db: Central, item_id: int) -> ReviewItem:
    row = db.one(f"SELECT {_COLUMNS} FROM member_reviews WHERE id = ?", (item_id,))
    if row is None:
        raise UserError(f"review item {item_id}: no such item (tenpo cloud members review lists them)")
    return _item(db, row, with_values=True)


# ---------------------------------------------------------------------------- masking


def mask(field: str, value: str | None) -> str:
    """Enough of a value to recognise it beside the other record's, not enough to use it.

    Names keep their first character and length (佐藤 花子 → 佐＊ ＊＊); phones, cards and postal codes
    their last four characters; e-mails the first character of the mailbox and the domain; birth dates
    the year and month; addresses the prefecture or first four characters.
    """
    if not value:
        return ""
    if field in ("name", "kana"):
        return "".join(c if i == 0 or c == " " else _star(c) for i, c in enumerate(value))
    if field in ("phone", "card_no", "postal_code"):
        return "•" * max(len(value) - 4, 0) + value[-4:]
    if field == "email":
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}•••@{domain}"
    if field == "birth_date":
        return value[:7] + "-••"
    if field == "address":
        return value[:4] + "…"
    return "•••"


def _star(char: str) -> str:
    return "＊" if unicodedata.east_asian_width(char) in ("W", "F") else "*"


def _masked_values(record: Any) -> dict[str, str]:
    return {f: mask(f, getattr(record, f)) for f in _SHOWN_FIELDS if getattr(record, f)}
