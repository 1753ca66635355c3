"""What resolving one record reads and writes, row at a time: the members tables as `attach` sees them.

`MemberAccess` asks the database for each answer and writes each change at once (a store's
registration, a clerk's action: one record, nothing to gain from batching). An import resolves a chunk
of rows against the same tables and uses `chunk.ChunkAccess`, which answers the same questions from
what it read for the whole chunk at once and writes in batches: the decisions are the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from tenpo.cloud.db import Central
from tenpo.cloud.identity import MergeDecision, RecordKey, SourceRecord

from .config import MembersConfig
from .review import queue_possible, rejected_partners
from .store import (
    SourceRow,
    candidates,
    create_member,
    find_source,
    member_sources,
    refresh_golden,
    save_source,
    source_hash,
)

_JSON = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(..., ensure_ascii=False) without a new encoder per call


def decision_json(decision: MergeDecision) -> dict[str, Any]:
    return {
        "text": decision.explain(),
        "left": list(decision.left),
        "right": list(decision.right),
        "rule": decision.rule,
        "score": decision.score,
        "comparisons": [[c.field, c.level, c.weight] for c in decision.comparisons],
    }


def link_row(member_id: str, record: SourceRecord, decision: MergeDecision, actor: str, now: float) -> tuple[Any, ...]:
    """A `member_merges` row for a record joined to a member (no member merged away)."""
    return (member_id, record.source, record.source_id, decision.rule, decision.score,
            json.dumps(decision.matched_fields), _JSON(decision_json(decision)), actor, now)  # fmt: skip


LINK_INSERT = ("INSERT INTO member_merges(winner, source, source_id, rule, score, matched_fields, explanation, actor,"
               " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")  # fmt: skip


class MemberAccess:
    """The members tables, straight from and to the database."""

    def __init__(self, db: Central, config: MembersConfig, now: float) -> None:
        self.db, self.config, self.now = db, config, now

    # ------------------------------------------------------------------ reads

    def find_source(self, key: RecordKey) -> SourceRow | None:
        return find_source(self.db, *key)

    def erased(self, key: RecordKey) -> bool:
        return self.db.scalar("SELECT 1 FROM member_erased_sources WHERE source_hash = ?", (source_hash(*key),)) is not None

    def candidates(self, record: SourceRecord, exclude_ref: int | None) -> list[SourceRow]:
        """Records sharing a blocking key with `record` (blocks too big to be evidence left out), by id."""
        return candidates(self.db, record, self.config, exclude_ref)

    def member_sources(self, member_id: str) -> list[SourceRow]:
        """The member's records, ordered by (source, source_id)."""
        return member_sources(self.db, member_id)

    def unmerged_with(self, record: SourceRecord, own: str | None) -> set[str]:
        """Members a clerk separated from this record or its member: never joined again automatically."""
        db = self.db
        rows = db.all("SELECT winner FROM member_merges WHERE undone = 1 AND source = ? AND source_id = ?",
                      (record.source, record.source_id))  # fmt: skip
        if own:
            rows += db.all("SELECT winner FROM member_merges WHERE undone = 1 AND loser = ?", (own,))
            rows += db.all("SELECT loser FROM member_merges WHERE undone = 1 AND winner = ? AND loser IS NOT NULL", (own,))
        return {row[0] for row in rows}

    def rejected_members(self, key: RecordKey) -> set[str]:
        """Members holding a record a person said is not the same person as `key`."""
        return {row.member_id for row in map(self.find_source, rejected_partners(self.db, key)) if row}

    def oldest(self, member_ids: Iterable[str]) -> str:
        """The member created first (ties: the smaller id): the one others are merged into."""
        ids = list(member_ids)
        marks = ", ".join("?" for _ in ids)
        rows = self.db.all(f"SELECT member_id, created_at FROM members WHERE member_id IN ({marks})", ids)
        return str(min(rows, key=lambda row: (float(row[1]), row[0]))[0])

    # ------------------------------------------------------------------ writes

    def create_member(self, member_id: str) -> None:
        create_member(self.db, member_id, None, self.now)

    def save_source(self, record: SourceRecord, member_id: str, raw_hash: str, prefecture: str | None,
                    existing: SourceRow | None) -> None:  # fmt: skip
        save_source(self.db, record, member_id, raw_hash, prefecture, self.config, self.now, existing)

    def queue_possible(self, decisions: list[MergeDecision]) -> None:
        queue_possible(self.db, decisions, self.now)

    def log_link(self, member_id: str, record: SourceRecord, decision: MergeDecision, actor: str) -> None:
        self.db.execute(LINK_INSERT, link_row(member_id, record, decision, actor, self.now))

    def refresh(self, member_id: str) -> None:
        """The member's golden record from its source records (survivorship)."""
        refresh_golden(self.db, member_id, self.config, self.now)

    def before_merge(self, member_ids: Iterable[str]) -> None:
        """Called before members are merged (merge_members reads and writes the database itself)."""

    def merged(self, winner: str, loser: str) -> None:
        """Called after `loser` was merged into `winner`."""

    def finish(self) -> None:
        """Write what is held back (nothing: every change was written at once)."""
