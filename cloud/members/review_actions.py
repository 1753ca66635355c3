"""Deciding a review item: accept merges the two members through the manual merge path (the merge
goes down the feed and can be undone like any other), reject records that the two are different
people. Both are audited with the operator and the note, in the caller's transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tenpo.cloud.changes import audit
from tenpo.cloud.db import Central
from tenpo.cloud.identity import FieldComparison, MergeDecision
from tenpo.shared.errors import UserError

from .config import MembersConfig
from .resolve import merge_members
from .review import ReviewItem, get_item, same_members_pending
from .store import Pending, publish

__all__ = ["Decided", "decide_item"]


@dataclass(frozen=True, slots=True)
class Decided:
    item_id: int
    status: str  # accepted, rejected
    merge_id: int | None = None
    winner: str | None = None
    loser: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.item_id, "status": self.status, "merge_id": self.merge_id, "winner": self.winner,
                "loser": self.loser}  # fmt: skip


def _oldest_first(db: Central, a: str, b: str) -> tuple[str, str]:
    rows = dict(db.all("SELECT member_id, created_at FROM members WHERE member_id IN (?, ?)", (a, b)))
    return (a, b) if (float(rows.get(a, 0)), a) <= (float(rows.get(b, 0)), b) else (b, a)


def _merge(db: Central, item: ReviewItem, actor: str, config: MembersConfig, now: float,
           pending: Pending) -> tuple[int | None, str | None, str | None]:  # fmt: skip
    if item.left_member is None or item.right_member is None:
        raise UserError(f"review item {item.item_id}: one of its records was erased; nothing to merge")
    if item.left_member == item.right_member:
        return None, item.left_member, None  # joined meanwhile by another link: nothing left to do
    winner, loser = _oldest_first(db, item.left_member, item.right_member)
    comparisons = tuple(FieldComparison(f, level, w) for f, level, w in item.comparisons)
    decision = MergeDecision(item.left, item.right, "manual", item.score, comparisons)
    return merge_members(db, winner, loser, decision, actor, config, now, pending), winner, loser


def decide_item(db: Central, item_id: int, accept: bool, *, actor: str = "operator", note: str | None = None,
                config: MembersConfig | None = None, now: float | None = None) -> Decided:
    """Accept or reject one pending item; the merge (if any) and its feed entries commit with the decision."""
    config = config or MembersConfig()
    now = time.time() if now is None else now
    with db.transaction():
        item = get_item(db, item_id)
        if item.status != "pending":
            raise UserError(f"review item {item_id} was already {item.status} by {item.decided_by or '?'}")
        pending = Pending()
        merge_id = winner = loser = None
        if accept:
            merge_id, winner, loser = _merge(db, item, actor, config, now, pending)
        status = "accepted" if accept else "rejected"
        # The decision is about two people: other pending pairs between the same two members share it
        # (after an accept they are one member, and would not be listed anyway).
        others = [] if accept or not (item.left_member and item.right_member) else [
            i for i in same_members_pending(db, item.left_member, item.right_member) if i != item_id]
        db.execute("UPDATE member_reviews SET status = ?, note = ?, decided_by = ?, decided_at = ?, merge_id = ?,"
                   " updated_at = ? WHERE id = ?", (status, note, actor, now, merge_id, now, item_id))  # fmt: skip
        db.executemany("UPDATE member_reviews SET status = 'rejected', note = ?, decided_by = ?, decided_at = ?,"
                       " updated_at = ? WHERE id = ?", [(f"with #{item_id}", actor, now, now, i) for i in others])  # fmt: skip
        audit(db, actor, f"member.review.{'accept' if accept else 'reject'}", item.left_member,
              {"item": item_id, "left": ":".join(item.left), "right": ":".join(item.right), "score": item.score,
               "note": note, "merge_id": merge_id, "also": others})  # fmt: skip
        publish(db, pending, now)
    return Decided(item_id, status, merge_id, winner, loser)
