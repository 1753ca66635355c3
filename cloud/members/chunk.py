"""The members tables as one chunk of an import sees them: read once for the whole chunk, written in batches.

Resolving row after row against the database costs some fifteen statements a row. `ChunkAccess`
answers the same questions as `MemberAccess` (the same answers, so the same decisions) from what it
reads up front for all the chunk's records at once: the stored records sharing a blocking key with any
of them, and the chunk's own erased and existing records; a member's other records are read when a row
first needs all of them. The chunk's own writes keep it current, so a later row sees the records earlier
rows of the chunk added, joined or merged, exactly as it would in the database. New members and source
records (numbered here, in the order the database would number them), blocking keys, review items and
links are written in batches, and each touched member's golden record is computed once, when the chunk
ends. Before anything reads the database again (a merge reads and writes it itself) what is held back
is written first."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tenpo.cloud.db import Central
from tenpo.cloud.identity import MergeDecision, RecordKey, SourceRecord, block_limit

from .access import LINK_INSERT, MemberAccess, link_row
from .config import MembersConfig
from .review import queue_possible_many
from .store import (
    _SELECT_FOR_MATCHING,
    BLOCK_INSERT,
    GOLDEN_UPDATE,
    MEMBER_INSERT,
    PROFILE_UPSERT,
    SOURCE_INSERT,
    SourceRow,
    _matching_row,
    golden_rows,
    matching_row,
    member_row,
    member_sources,
    record_keys,
    source_hash,
    source_values,
    update_source,
)

_IN_SLICE = 900  # values per IN (...) list: well below SQLite's and PostgreSQL's parameter limits


@dataclasses.dataclass(slots=True)
class ChunkCache:
    """What the chunks of one import know of the tables, handed from chunk to chunk so each reads only
    what no chunk before it read: every chunk's writes keep it current (see ChunkAccess). Anything else
    that writes members at HQ meanwhile (a store's registration applied, a review decided, an erasure)
    also writes the change feed, so `revalidate` forgets everything when the feed's counter moved
    between two chunks of the import. Only for chunks run one after another in one import; after a
    chunk that failed (its transaction rolled back) it is wrong: start a new one."""

    rows: dict[int, SourceRow] = dataclasses.field(default_factory=dict)  # every record read or written
    ref_of: dict[RecordKey, int | None] = dataclasses.field(default_factory=dict)  # None: known not to be stored
    refs_of: dict[str, set[int]] = dataclasses.field(default_factory=dict)  # member -> its records read or written
    complete: set[str] = dataclasses.field(default_factory=set)  # members whose every record is in rows
    count: dict[str, int] = dataclasses.field(default_factory=dict)  # records per blocking key, of the keys asked about
    block: dict[str, set[int]] = dataclasses.field(default_factory=dict)  # records of those keys not too big to be evidence
    created: dict[str, float] = dataclasses.field(default_factory=dict)
    # Whether any merge was undone / any review pair rejected: imports do neither, and asking scans the whole
    # merge log (no index on `undone`), a few ms per chunk that grow with the log.
    any_undone: bool | None = None
    any_rejected: bool | None = None
    # Members whose golden record is due, when the chunks of a transaction leave them to its end (ChunkAccess
    # `defer_golden`): not forgotten by revalidate, the records are read again for them then.
    due: set[str] = dataclasses.field(default_factory=set)
    change_mark: int | None = None  # the feed's counter as the last chunk committed

    def revalidate(self, db: Central) -> None:
        """At a chunk's start: keep what earlier chunks read only if nobody else wrote since."""
        if self.change_mark is not None and _change_counter(db) != self.change_mark:
            for table in (self.rows, self.ref_of, self.refs_of, self.complete, self.count, self.block, self.created):
                table.clear()
            self.any_undone = self.any_rejected = None
        self.change_mark = None

    def mark(self, db: Central) -> None:
        """Last in a chunk's transaction (db.before_commit): the counter as this chunk leaves it."""
        self.change_mark = _change_counter(db)


def _change_counter(db: Central) -> int:
    # Its row lock is held to commit on PostgreSQL (cloud.changes), so it moves in commit order.
    return int(db.scalar("SELECT value FROM counters WHERE name = 'change'"))


class ChunkAccess(MemberAccess):
    """`MemberAccess` for the chunk of import rows whose records are `records`."""

    def __init__(self, db: Central, config: MembersConfig, now: float, records: Sequence[SourceRecord],
                 seen: ChunkCache | None = None, quality_text: Mapping[RecordKey, str] | None = None,
                 defer_golden: bool = False) -> None:  # fmt: skip
        """`quality_text`: quality_json of the records' field quality, when the import has it already.
        `defer_golden`: `finish` leaves the due golden records in `seen.due` for a later chunk's `finish`
        (the last of the transaction, before its feed entries read them); a merge still brings its two
        members' records up to date first."""
        super().__init__(db, config, now)
        self._defer_golden = defer_golden
        self._quality_text = quality_text or {}
        seen = seen if seen is not None else ChunkCache()
        self._rows = seen.rows
        self._ref_of = seen.ref_of
        self._refs_of = seen.refs_of
        self._complete = seen.complete
        self._count = seen.count
        self._block = seen.block
        self._created = seen.created
        self._erased: set[RecordKey] = set()  # of the chunk's own records (_own)
        self._own: set[RecordKey] = set()
        self._dirty = seen.due  # members whose golden record is due
        self._out_members: list[tuple[Any, ...]] = []
        self._out_sources: list[tuple[Any, ...]] = []
        self._out_blocks: list[tuple[str, int]] = []
        self._out_reviews: list[MergeDecision] = []
        self._out_links: list[tuple[Any, ...]] = []
        # Imports never unmerge or reject: when the tables hold no such rows, nobody is blocked.
        if seen.any_undone is None:
            seen.any_undone = db.one("SELECT 1 FROM member_merges WHERE undone = 1 LIMIT 1") is not None
        if seen.any_rejected is None:
            seen.any_rejected = db.one("SELECT 1 FROM member_reviews WHERE status = 'rejected' LIMIT 1") is not None
        self._any_undone, self._any_rejected = seen.any_undone, seen.any_rejected
        self._load(records)
        self._free_refs = self._reserve_refs(len(records))

    def _reserve_refs(self, count: int) -> list[int]:
        """Ids for the records the chunk may add, in ascending order (the order the database would give)."""
        if self.db.dialect == "postgresql":
            rows = self.db.all("SELECT nextval(pg_get_serial_sequence('member_sources', 'id')) FROM generate_series(1, ?)",
                               (count,))  # fmt: skip
            return sorted((int(row[0]) for row in rows), reverse=True)  # popped from the end
        last = int(self.db.scalar("SELECT coalesce(max(id), 0) FROM member_sources"))
        return list(range(last + count, last, -1))

    # ------------------------------------------------------------------ reading ahead

    def _select_in(self, head: str, values: Iterable[Any], params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of `head` (its IN list written as {}) for all `values`, a slice of them per statement."""
        values, rows = list(values), []
        for start in range(0, len(values), _IN_SLICE):
            part = values[start : start + _IN_SLICE]
            rows += self.db.all(head.format(", ".join("?" for _ in part)), [*params, *part])
        return rows

    def _load(self, records: Sequence[SourceRecord]) -> None:
        keys = {record.key for record in records}
        hashes = {source_hash(*key): key for key in keys}
        found = self._select_in("SELECT source_hash FROM member_erased_sources WHERE source_hash IN ({})", hashes)
        self._erased = {hashes[row[0]] for row in found}
        self._own = keys
        unknown = sorted(key for key in keys if key not in self._ref_of)  # an earlier chunk may know the rest
        self._ref_of.update(dict.fromkeys(unknown))
        by_source: dict[str, list[str]] = {}
        for source, source_id in unknown:
            by_source.setdefault(source, []).append(source_id)
        stored = []
        for source, ids in by_source.items():
            stored += self._select_in(f"{_SELECT_FOR_MATCHING} WHERE source = ? AND source_id IN ({{}})", ids, (source,))
        self._add_rows(stored)
        self._records = {record.key: record for record in records}
        self._keys_of = {record.key: record_keys(record, self.config) for record in records}
        self._load_keys({key for keys in self._keys_of.values() for key in keys})

    def _load_keys(self, keys: Iterable[str]) -> None:
        """Counts of these blocking keys, and the records of those small enough."""
        wanted = sorted({key for key in keys if key not in self._count})
        if not wanted:
            return
        self._write_out()  # the database must hold every key written so far
        counts = dict(self._select_in("SELECT block_key, count(*) FROM member_blocks WHERE block_key IN ({})"
                                      " GROUP BY block_key", wanted))  # fmt: skip
        small = [key for key in wanted if int(counts.get(key, 0)) <= block_limit(key, self.config.match)]
        for key in wanted:
            self._count[key] = int(counts.get(key, 0))
        for key in small:
            self._block[key] = set()
        refs = set()
        for key, ref in self._select_in("SELECT block_key, source_ref FROM member_blocks WHERE block_key IN ({})", small):
            self._block[key].add(int(ref))
            refs.add(int(ref))
        self._load_rows(refs)

    def _load_rows(self, refs: Iterable[int]) -> None:
        unknown = sorted({ref for ref in refs if ref not in self._rows})
        self._add_rows(self._select_in(f"{_SELECT_FOR_MATCHING} WHERE id IN ({{}})", unknown))

    def _add_rows(self, rows: list[tuple[Any, ...]]) -> None:
        members = set()
        for row in rows:
            parsed = _matching_row(row)
            self._add(parsed)
            members.add(parsed.member_id)
        # A person's records mostly share their blocking keys: those read may already be all of them.
        counts = self._select_in("SELECT member_id, count(*) FROM member_sources WHERE member_id IN ({})"
                                 " GROUP BY member_id", sorted(members - self._complete))  # fmt: skip
        self._complete.update(member for member, count in counts if int(count) == len(self._refs_of[member]))

    def _load_members(self, members: Iterable[str]) -> None:
        """Every record of these members: for their golden record, and so a merge can move them all here too."""
        wanted = sorted({member for member in members if member not in self._complete})
        if not wanted:
            return
        self._write_out()
        self._complete.update(wanted)
        for row in self._select_in(f"{_SELECT_FOR_MATCHING} WHERE member_id IN ({{}})", wanted):
            self._add(_matching_row(row))

    def _add(self, row: SourceRow) -> None:
        self._rows[row.ref] = row
        self._ref_of[row.record.key] = row.ref
        self._refs_of.setdefault(row.member_id, set()).add(row.ref)

    def _refs(self, key: str) -> set[int]:
        if key not in self._count:
            self._load_keys([key])
        if key not in self._block:  # too big when read: it has shrunk since (a record changed its keys)
            self._write_out()
            self._block[key] = {int(r[0]) for r in self.db.all("SELECT source_ref FROM member_blocks WHERE block_key = ?",
                                                                 (key,))}  # fmt: skip
            self._load_rows(self._block[key])
        return self._block[key]

    def _record_keys(self, record: SourceRecord) -> list[str]:
        keys = self._keys_of.get(record.key)
        if keys is None or record is not self._records.get(record.key):  # not one of the chunk's own records
            return record_keys(record, self.config)
        return keys

    # ------------------------------------------------------------------ reads

    def find_source(self, key: RecordKey) -> SourceRow | None:
        if key not in self._ref_of:
            self._write_out()
            row = super().find_source(key)
            self._ref_of[key] = row.ref if row else None
            if row:
                self._add(row)
        ref = self._ref_of[key]
        return None if ref is None else self._rows[ref]

    def erased(self, key: RecordKey) -> bool:
        return key in self._erased if key in self._own else super().erased(key)

    def candidates(self, record: SourceRecord, exclude_ref: int | None) -> list[SourceRow]:
        refs: set[int] = set()
        for key in self._record_keys(record):
            if key not in self._count:
                self._load_keys([key])
            if self._count[key] <= block_limit(key, self.config.match):
                refs |= self._refs(key)
        return [self._rows[ref] for ref in sorted(refs) if ref != exclude_ref]

    def member_sources(self, member_id: str) -> list[SourceRow]:
        if self.db.dialect != "sqlite":
            # PostgreSQL orders text by the database's collation, not by code point as Python does.
            self._write_out()
            return member_sources(self.db, member_id)
        self._load_members([member_id])
        rows = [self._rows[ref] for ref in self._refs_of[member_id]]
        return sorted(rows, key=lambda row: row.record.key)

    def unmerged_with(self, record: SourceRecord, own: str | None) -> set[str]:
        return super().unmerged_with(record, own) if self._any_undone else set()

    def rejected_members(self, key: RecordKey) -> set[str]:
        return super().rejected_members(key) if self._any_rejected else set()

    def oldest(self, member_ids: Iterable[str]) -> str:
        ids = list(member_ids)
        wanted = sorted({member for member in ids if member not in self._created})
        for member, created in self._select_in("SELECT member_id, created_at FROM members WHERE member_id IN ({})", wanted):
            self._created[member] = float(created)
        return min(ids, key=lambda member: (self._created[member], member))

    # ------------------------------------------------------------------ writes

    def create_member(self, member_id: str) -> None:
        self._out_members.append(member_row(member_id, None, self.now))
        self._refs_of[member_id] = set()
        self._complete.add(member_id)
        self._created[member_id] = self.now

    def save_source(self, record: SourceRecord, member_id: str, raw_hash: str, prefecture: str | None,
                    existing: SourceRow | None) -> None:  # fmt: skip
        own = record is self._records.get(record.key)
        values = source_values(record, raw_hash, prefecture, self._quality_text.get(record.key) if own else None)
        if existing is None:
            ref = self._free_refs.pop()
            self._out_sources.append((ref, record.source, record.source_id, member_id, *values, self.now, self.now))
        else:
            ref, member_id = existing.ref, existing.member_id
            self._write_out()
            for (key,) in self.db.all("SELECT block_key FROM member_blocks WHERE source_ref = ?", (ref,)):
                if key in self._count:
                    self._count[key] -= 1
                    self._block.get(key, set()).discard(ref)
            update_source(self.db, ref, values, self.now)
        self._add(matching_row(ref, record, member_id, values))
        for key in self._record_keys(record):
            self._out_blocks.append((key, ref))
            if key in self._count:
                self._count[key] += 1
                if key in self._block:
                    self._block[key].add(ref)

    def queue_possible(self, decisions: list[MergeDecision]) -> None:
        self._out_reviews += decisions

    def log_link(self, member_id: str, record: SourceRecord, decision: MergeDecision, actor: str) -> None:
        self._out_links.append(link_row(member_id, record, decision, actor, self.now))

    def refresh(self, member_id: str) -> None:
        self._dirty.add(member_id)

    def before_merge(self, member_ids: Iterable[str]) -> None:
        members = set(member_ids)
        self._load_members(members)
        # The merge writes after the links before it and reads the two members' golden rows: those must be
        # current. Other members' golden records wait for the end of the chunk, computed once from their
        # final records rather than again at every merge (the same values: nothing reads them meanwhile).
        self._flush()
        due = sorted(self._dirty & members)
        self._refresh_golden(due)
        self._dirty.difference_update(due)

    def merged(self, winner: str, loser: str) -> None:
        for ref in self._refs_of.pop(loser):
            self._rows[ref] = dataclasses.replace(self._rows[ref], member_id=winner)
            self._refs_of[winner].add(ref)
        self._created.pop(loser, None)
        self._complete.discard(loser)
        self._dirty.discard(loser)

    # ------------------------------------------------------------------ writing out

    def _write_out(self) -> None:
        """New members, source records and blocking keys: what the database must hold before it is read."""
        self.db.executemany(MEMBER_INSERT, self._out_members)
        self.db.executemany(SOURCE_INSERT, self._out_sources)
        self.db.executemany(BLOCK_INSERT, self._out_blocks)
        self._out_members, self._out_sources, self._out_blocks = [], [], []

    def _flush(self) -> None:
        """Write what is held back: links, review items, new members and records with their blocking keys."""
        self.db.executemany(LINK_INSERT, self._out_links)
        self._out_links = []
        queue_possible_many(self.db, self._out_reviews, self.now)
        self._out_reviews = []
        self._write_out()

    def finish(self) -> None:
        """Write what is held back, then the due golden records (unless deferred)."""
        self._flush()
        if not self._defer_golden:
            self._refresh_golden(sorted(self._dirty))
            self._dirty.clear()

    def _refresh_golden(self, members: list[str]) -> None:
        """refresh_golden for many members: two reads in all rather than three per member."""
        if not members:
            return
        self._load_members(members)
        # The cached records (the database's, see the class doc) in any order: survivorship does not depend on it.
        rows = {member: [self._rows[ref] for ref in self._refs_of[member]] for member in members}
        stored = dict(self._select_in("SELECT member_id, consent FROM members WHERE member_id IN ({})", members))
        consent: dict[str, dict[str, bool]] = {member: {} for member in members}
        for member, channel, granted in self._select_in(
            "SELECT s.member_id, c.channel, c.granted FROM member_consents c JOIN member_sources s"
            " ON s.source = c.source AND s.source_id = c.source_id WHERE s.member_id IN ({})"
            " ORDER BY c.updated_at, c.channel", members,
        ):  # fmt: skip
            consent[member][channel] = bool(granted)
        updates, profiles = [], []
        for member in members:
            if rows[member]:
                update, profile = golden_rows(member, rows[member], stored.get(member) or "{}", consent[member],
                                              self.config, self.now)  # fmt: skip
                updates.append(update)
                profiles.append(profile)
        self.db.executemany(GOLDEN_UPDATE, updates)
        self.db.executemany(PROFILE_UPSERT, profiles)
