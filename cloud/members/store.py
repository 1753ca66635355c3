"""Source records and golden members in the central database (both dialects).

Reads and writes only; deciding who is whom is tenpo.cloud.identity's job, and putting the two
together is resolve.py's. Feed entries are collected in a `Pending` and turned into change tuples at
the end, so a batch that touches one member ten times sends one `member.upsert`, after its merges.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tenpo.cloud.changes import member_records, new_beacon_secret, record_changes
from tenpo.cloud.db import Central
from tenpo.cloud.identity import SourceRecord, block_limit, blocking_keys, golden_record
from tenpo.cloud.plan import ChangeTuple
from tenpo.shared.cleansing import MEMBER_FIELDS, FieldQuality

from .config import MembersConfig
from .schema_tables import pg_member_tables, quote_name, sqlite_member_tables

log = logging.getLogger(__name__)

SOURCE_COLUMNS = ("id", "source", "source_id", "member_id", *MEMBER_FIELDS, "prefecture", "verified", "custom",
                  "raw_hash", "seen_at", "field_quality")  # fmt: skip
_SELECT_SOURCES = f"SELECT {', '.join(SOURCE_COLUMNS)} FROM member_sources"
# Matching never reads field quality (a long JSON text): leaving it out saves fetching and hashing it.
_SELECT_FOR_MATCHING = f"SELECT {', '.join(c for c in SOURCE_COLUMNS if c != 'field_quality')} FROM member_sources"


@dataclass(frozen=True, slots=True)
class SourceRow:
    ref: int
    member_id: str
    raw_hash: str
    prefecture: str | None
    record: SourceRecord


def new_member_id() -> str:
    """A golden id made at HQ: time-ordered, and without the '-' every store's provisional id has."""
    return f"G{int(time.time() * 1000):011x}{secrets.token_hex(3)}"


# json.dumps with options builds a new encoder on every call; the import makes several per row.
_ROW_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str).encode
SORTED_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode
"""json.dumps(value, ensure_ascii=False, sort_keys=True), the same text."""


def row_hash(value: Any) -> str:
    """Fingerprint of an input row: the same row imported again is recognised and changes nothing."""
    text = _ROW_JSON(value)
    return hashlib.sha256(text.encode()).hexdigest()


def source_hash(source: str, source_id: str) -> str:
    return hashlib.sha256(f"{source}\x1f{source_id}".encode()).hexdigest()


@functools.lru_cache(maxsize=1 << 17)
def _matching_row(row: tuple[Any, ...]) -> SourceRow:
    """A row of _SELECT_FOR_MATCHING, cached by the whole row: an import reads the same records again
    and again as candidates, and the identical record object also hits `features`' cache. A changed
    row is a new key."""
    return _parse_source_row(row, False)


# A row is read by position (every record an import writes or reads is parsed): _parse_source_row names the
# member fields (SOURCE_COLUMNS' and SourceRecord's after source and source_id) in MEMBER_FIELDS order.
_NAMED_IN_ORDER = ("name", "kana", "email", "phone", "postal_code", "address", "birth_date", "card_no")
if MEMBER_FIELDS != _NAMED_IN_ORDER or tuple(f.name for f in dataclasses.fields(SourceRecord))[2:10] != MEMBER_FIELDS:
    raise ImportError("SourceRecord's fields after source and source_id must be MEMBER_FIELDS, as _NAMED_IN_ORDER")


def _parse_source_row(row: tuple[Any, ...], with_quality: bool) -> SourceRow:
    (ref, source, source_id, member_id, name, kana, email, phone, postal_code, address, birth_date, card_no,
     prefecture, verified, custom, raw_hash, seen_at, *quality) = row  # field_quality last: with_quality
    record = SourceRecord(
        source, source_id, name, kana, email, phone, postal_code, address, birth_date, card_no,
        verified=_json_set(verified), updated_at=seen_at or "",
        custom=MappingProxyType(_json_map(custom)),  # read-only: the object may be shared (cache)
        quality=quality_from_json(quality[0]) if with_quality else {},
    )  # fmt: skip
    return SourceRow(int(ref), member_id, raw_hash, prefecture, record)


def _json_set(text: str | None) -> frozenset[str]:
    return frozenset() if not text or text == "[]" else frozenset(json.loads(text))  # most records: none, no parse


def _json_map(text: str | None) -> dict[str, Any]:
    return {} if not text or text == "{}" else dict(json.loads(text))


def quality_json(quality: Mapping[str, FieldQuality]) -> str:
    """The `field_quality` column: {field: {"status", "raw", "rule", "reason"}} (see schema.py, migration 7)."""
    return SORTED_JSON({name: q.as_json() for name, q in quality.items()})


def quality_from_json(text: str | None) -> dict[str, FieldQuality]:
    data = json.loads(text or "{}")
    return {name: FieldQuality.from_json(value) for name, value in data.items() if isinstance(value, dict)}


def find_source(db: Central, source: str, source_id: str) -> SourceRow | None:
    row = db.one(f"{_SELECT_FOR_MATCHING} WHERE source = ? AND source_id = ?", (source, source_id))
    return _matching_row(row) if row else None


def member_sources(db: Central, member_id: str, with_quality: bool = False) -> list[SourceRow]:
    """The member's source records; `with_quality` also reads each field's cleansing outcome (for showing)."""
    if with_quality:
        rows = db.all(f"{_SELECT_SOURCES} WHERE member_id = ? ORDER BY source, source_id", (member_id,))
        return [_parse_source_row(r, True) for r in rows]
    rows = db.all(f"{_SELECT_FOR_MATCHING} WHERE member_id = ? ORDER BY source, source_id", (member_id,))
    return [_matching_row(r) for r in rows]


def source_values(record: SourceRecord, raw_hash: str, prefecture: str | None,
                  quality_text: str | None = None) -> tuple[Any, ...]:  # fmt: skip
    """A record's columns from `name` to `field_quality`, in SOURCE_COLUMNS order (`quality_text`: the
    record's quality_json when already made)."""
    return (*(getattr(record, name) for name in MEMBER_FIELDS), prefecture,
            json.dumps(sorted(record.verified)), SORTED_JSON(dict(record.custom)),
            raw_hash, record.updated_at, quality_text if quality_text is not None else quality_json(record.quality))  # fmt: skip


def matching_row(ref: int, record: SourceRecord, member_id: str, values: tuple[Any, ...]) -> SourceRow:
    """The row `find_source` would read back for a record just written with `values` (source_values)."""
    return _matching_row((ref, record.source, record.source_id, member_id, *values[:-1]))


def insert_source(db: Central, record: SourceRecord, member_id: str, values: tuple[Any, ...], now: float) -> int:
    return int(db.scalar(
        "INSERT INTO member_sources(source, source_id, member_id, name, kana, email, phone, postal_code, address,"
        " birth_date, card_no, prefecture, verified, custom, raw_hash, seen_at, field_quality, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (record.source, record.source_id, member_id, *values, now, now),
    ))  # fmt: skip


# With the id: an import's chunk numbers its new records itself and writes them in one batch.
SOURCE_INSERT = (
    "INSERT INTO member_sources(id, source, source_id, member_id, name, kana, email, phone, postal_code, address,"
    " birth_date, card_no, prefecture, verified, custom, raw_hash, seen_at, field_quality, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)  # fmt: skip


def update_source(db: Central, ref: int, values: tuple[Any, ...], now: float) -> None:
    """New values for a stored record; its blocking keys are dropped (the caller writes the new ones)."""
    db.execute(
        "UPDATE member_sources SET name = ?, kana = ?, email = ?, phone = ?, postal_code = ?, address = ?,"
        " birth_date = ?, card_no = ?, prefecture = ?, verified = ?, custom = ?, raw_hash = ?, seen_at = ?,"
        " field_quality = ?, updated_at = ? WHERE id = ?",
        (*values, now, ref),
    )
    db.execute("DELETE FROM member_blocks WHERE source_ref = ?", (ref,))


def record_keys(record: SourceRecord, config: MembersConfig) -> list[str]:
    """The record's blocking keys, each once, sorted: what member_blocks holds for it."""
    return sorted(set(blocking_keys(record, config.match)))


BLOCK_INSERT = "INSERT INTO member_blocks(block_key, source_ref) VALUES (?, ?)"


def save_source(db: Central, record: SourceRecord, member_id: str, raw_hash: str, prefecture: str | None,
                config: MembersConfig, now: float, existing: SourceRow | None = None) -> int:
    """Insert or update one source record and its blocking keys; returns its row id."""
    values = source_values(record, raw_hash, prefecture)
    if existing is None:
        ref = insert_source(db, record, member_id, values, now)
    else:
        ref = existing.ref
        update_source(db, ref, values, now)
    db.executemany(BLOCK_INSERT, [(key, ref) for key in record_keys(record, config)])
    return ref


def candidates(db: Central, record: SourceRecord, config: MembersConfig, exclude_ref: int | None) -> list[SourceRow]:
    """Source records sharing a blocking key with `record`; keys held by too many records are no evidence."""
    keys = sorted(set(blocking_keys(record, config.match)))
    if not keys:
        return []
    marks = ", ".join("?" for _ in keys)
    limits = " ".join(f"WHEN ? THEN {block_limit(key, config.match)}" for key in keys)
    # One round trip: the blocks small enough to be evidence, then the records in them.
    rows = db.all(
        f"{_SELECT_FOR_MATCHING} WHERE id IN (SELECT source_ref FROM member_blocks WHERE block_key IN"
        f" (SELECT block_key FROM member_blocks WHERE block_key IN ({marks}) GROUP BY block_key"
        f" HAVING count(*) <= CASE block_key {limits} END)) ORDER BY id", [*keys, *keys],
    )  # fmt: skip
    return [row for row in map(_matching_row, rows) if row.ref != exclude_ref]


def save_consent(db: Central, source: str, source_id: str, consent: Mapping[str, bool], now: float) -> None:
    for channel, granted in consent.items():
        db.execute(
            "INSERT INTO member_consents(source, source_id, channel, granted, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(source, source_id, channel) DO UPDATE SET granted = excluded.granted,"
            " updated_at = excluded.updated_at",
            (source, source_id, channel, int(bool(granted)), now),
        )


def member_consent(db: Central, member_id: str) -> dict[str, bool]:
    """Per channel, the newest word any of the member's source records gave."""
    rows = db.all(
        "SELECT c.channel, c.granted FROM member_consents c JOIN member_sources s"
        " ON s.source = c.source AND s.source_id = c.source_id WHERE s.member_id = ? ORDER BY c.updated_at, c.channel",
        (member_id,),
    )
    return {channel: bool(granted) for channel, granted in rows}


def create_member(db: Central, member_id: str, home_store: str | None, now: float) -> None:
    db.execute(MEMBER_INSERT, member_row(member_id, home_store, now))


MEMBER_INSERT = ("INSERT INTO members(member_id, consent, custom, home_store, beacon_secret, created_at, updated_at)"
                 " VALUES (?, '{}', '{}', ?, ?, ?, ?)")  # fmt: skip


def member_row(member_id: str, home_store: str | None, now: float) -> tuple[Any, ...]:
    return (member_id, home_store, new_beacon_secret(), now, now)


def refresh_golden(db: Central, member_id: str, config: MembersConfig, now: float) -> bool:
    """Survivorship over the member's source records into `members` (what stores get) and the profile."""
    rows = member_sources(db, member_id)
    if not rows:
        return False
    stored = db.scalar("SELECT consent FROM members WHERE member_id = ?", (member_id,), "{}")
    member, profile = golden_rows(member_id, rows, stored, member_consent(db, member_id), config, now)
    db.execute(GOLDEN_UPDATE, member)
    db.execute(PROFILE_UPSERT, profile)
    return True


GOLDEN_UPDATE = ("UPDATE members SET name = ?, kana = ?, phone = ?, email = ?, card_no = ?, custom = ?, consent = ?,"
                 " updated_at = ? WHERE member_id = ? AND erased = 0")  # fmt: skip
PROFILE_UPSERT = (
    "INSERT INTO member_profiles(member_id, postal_code, address, prefecture, birth_date, provenance, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(member_id) DO UPDATE SET postal_code = excluded.postal_code,"
    " address = excluded.address, prefecture = excluded.prefecture, birth_date = excluded.birth_date,"
    " provenance = excluded.provenance, updated_at = excluded.updated_at"
)  # fmt: skip


_CONSENT_JSON = json.JSONEncoder(sort_keys=True).encode  # json.dumps(value, sort_keys=True), the same text


def golden_rows(member_id: str, rows: list[SourceRow], stored_consent: str, consent: Mapping[str, bool],
                config: MembersConfig, now: float) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The parameters of GOLDEN_UPDATE and PROFILE_UPSERT for a member with these source records (in
    (source, source_id) order), its stored consent (JSON) and its records' consent (member_consent). Pure."""
    golden = golden_record([row.record for row in rows], config.survivorship)
    v = golden.values
    prefecture = next((row.prefecture for row in rows if row.record.key == golden.provenance.get("postal_code")), None)
    merged_consent = {} if stored_consent == "{}" else json.loads(stored_consent)
    merged_consent.update(consent)
    provenance = {name: ":".join(key) for name, key in golden.provenance.items()}
    member = (v.get("name"), v.get("kana"), v.get("phone"), v.get("email"), v.get("card_no"),
              SORTED_JSON(dict(golden.custom)),
              _CONSENT_JSON(merged_consent), now, member_id)  # fmt: skip
    profile = (member_id, v.get("postal_code"), v.get("address"), prefecture, v.get("birth_date"),
               SORTED_JSON(provenance), now)  # fmt: skip
    return member, profile


def golden_id(db: Central, member_id: str) -> str:
    """The golden id a (possibly merged-away) member id stands for now."""
    return str(db.scalar("SELECT member_id FROM member_aliases WHERE alias = ?", (member_id,), member_id))


# ---------------------------------------------------------------------------- other areas' rows

# Tables the members area moves itself in a merge (source records, ledger, aliases, ...); the balance
# table follows the ledger through its triggers. Every `member_*` table is ours too.
_OWN_TABLES = frozenset({"members", "points_ledger", "points_balances"})
_KEY_TYPES = (str, int, float)


# Derived tables keyed by member_id (one row per member, computed from the ledger and sales, e.g.
# loyalty_members): never moved row by row. The owning area registers a hook that, after a merge, unmerge or
# erasure, drops the rows of the ids that are gone and computes the touched members' rows again, in the same
# transaction, recording its own changes (it runs after the members' changes are recorded, see `publish`).
DerivedHook = Callable[[Central, list[str], list[str], float], None]  # (db, recompute, gone, now)
DERIVED_TABLES: dict[str, DerivedHook] = {}


def register_derived(table: str, hook: DerivedHook) -> None:
    DERIVED_TABLES[table] = hook


def run_derived(db: Central, pending: Pending, now: float) -> None:
    """Let each derived table's area follow the merges, unmerges and erasures in `pending` (once each)."""
    recompute, gone = sorted(pending.recompute - pending.gone), sorted(pending.gone)
    pending.recompute.clear()
    pending.gone.clear()
    if recompute or gone:
        for _table, hook in sorted(DERIVED_TABLES.items()):
            hook(db, recompute, gone, now)


@dataclass(frozen=True, slots=True)
class MemberTable:
    """A table of another area with a member_id column; `key` (its primary key) names a moved row."""

    name: str
    key: tuple[str, ...]


def member_tables(db: Central) -> list[MemberTable]:
    """Every HQ table with a member_id column that a merge must re-point, found in the schema so
    tables other areas add later are covered. Tables it cannot move row by row are left out, logged."""
    found = pg_member_tables(db) if db.dialect == "postgresql" else sqlite_member_tables(db)
    tables = []
    for name, key in sorted(found.items()):
        if name in _OWN_TABLES or name.startswith("member_") or name in DERIVED_TABLES:
            continue
        if not key:
            log.warning("table %s has member_id but no primary key: merges leave its rows under the old id", name)
        elif "member_id" in key:
            log.warning("table %s has member_id in its primary key: merges leave its rows under the old id", name)
        else:
            tables.append(MemberTable(name, key))
    return tables


_quote = quote_name


def move_member_rows(db: Central, merge_id: int, loser: str, winner: str) -> int:
    """Re-point `loser`'s rows in every member table to `winner`, remembering each row's key under
    `merge_id` so an unmerge moves exactly these back. Returns how many rows moved."""
    moved = 0
    for table in member_tables(db):
        rows = db.all(f"SELECT {', '.join(map(_quote, table.key))} FROM {_quote(table.name)} WHERE member_id = ?", (loser,))
        if not rows:
            continue
        if any(not isinstance(value, _KEY_TYPES) for row in rows for value in row):
            log.warning("table %s: a key value is not text or a number; its rows stay under %s", table.name, loser)
            continue
        keys = [json.dumps(dict(zip(table.key, row)), ensure_ascii=False, sort_keys=True) for row in rows]
        db.executemany(
            "INSERT INTO member_row_moves(merge_id, table_name, row_key, from_member) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(merge_id, table_name, row_key) DO NOTHING",
            [(merge_id, table.name, key, loser) for key in keys],
        )
        db.execute(f"UPDATE {_quote(table.name)} SET member_id = ? WHERE member_id = ?", (winner, loser))
        moved += len(rows)
    return moved


def restore_member_rows(db: Central, merge_id: int, winner: str) -> int:
    """Unmerge: the rows merge `merge_id` moved (and late ones moved under it) go back to their member,
    those still the winner's (an erasure may have deleted some). Returns how many keys were recorded."""
    tables = {table.name: table for table in member_tables(db)}
    by_table: dict[str, list[tuple[Any, ...]]] = {}
    for name, row_key, from_member in db.all(
        "SELECT table_name, row_key, from_member FROM member_row_moves WHERE merge_id = ? ORDER BY table_name, row_key",
        (merge_id,),
    ):
        table, key = tables.get(name), json.loads(row_key)
        if table is None or sorted(key) != sorted(table.key):
            log.warning("merge %s: table %s is gone or has a new primary key; its rows stay with %s", merge_id, name, winner)
            continue
        by_table.setdefault(name, []).append((from_member, winner, *(key[column] for column in table.key)))
    restored = 0
    for name, params in by_table.items():
        match = " AND ".join(f"{_quote(column)} = ?" for column in tables[name].key)
        db.executemany(f"UPDATE {_quote(name)} SET member_id = ? WHERE member_id = ? AND {match}", params)
        restored += len(params)
    return restored


def remap_alias_rows(db: Central, member_id: str) -> int:
    """Rows that arrived under a merged-away id (a store offline during the merge) join the golden member."""
    found = db.one("SELECT member_id, merge_id FROM member_aliases WHERE alias = ?", (member_id,))
    return 0 if found is None else move_member_rows(db, int(found[1]), member_id, str(found[0]))


def member_aliases(db: Central, member_id: str) -> list[str]:
    """Ids merged (directly or through another merge) into golden member `member_id`."""
    return [r[0] for r in db.all("SELECT alias FROM member_aliases WHERE member_id = ? ORDER BY alias", (member_id,))]


# ---------------------------------------------------------------------------- change feed


@dataclass(slots=True)
class Pending:
    """Feed entries to send: merges, unmerges and erasures in order, then each touched member once."""

    events: list[ChangeTuple] = field(default_factory=list)
    members: set[str] = field(default_factory=set)
    balances: set[str] = field(default_factory=set)
    recompute: set[str] = field(default_factory=set)  # members whose derived rows follow a merge/unmerge
    gone: set[str] = field(default_factory=set)  # ids merged away or erased: their derived rows go

    def extend(self, other: Pending) -> None:
        self.events += other.events
        self.members |= other.members
        self.balances |= other.balances
        self.recompute |= other.recompute
        self.gone |= other.gone

    def materialize(self, db: Central) -> list[ChangeTuple]:
        changes = list(self.events)
        members = sorted(self.members)
        records = member_records(db, members)
        for member_id in members:
            record = records.get(member_id)
            if record is not None:  # merged away or erased: no upsert
                changes.append(("member.upsert", member_id, None, record))
        for member_id in sorted(self.balances):
            changes.append(("points.balance", member_id, None, balance_data(db, member_id)))
        return changes


def balance_data(db: Central, member_id: str) -> dict[str, Any]:
    """The same shape the core publishes: the balance and, per store, the events it includes."""
    balance = int(db.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (member_id,), 0))
    through = dict(db.all(
        "SELECT store_id, last_applied_seq FROM stores WHERE store_id IN "
        "(SELECT DISTINCT store_id FROM points_ledger WHERE member_id = ?)", (member_id,),
    ))  # fmt: skip
    return {"member_id": member_id, "balance": balance, "through": {k: int(v) for k, v in through.items()}}


def publish(db: Central, pending: Pending, now: float) -> list[int]:
    """Append the pending entries to the feed (inside the caller's transaction), then the derived tables'
    changes (a merge's winner's loyalty after the merge)."""
    changes = pending.materialize(db)
    seqs = record_changes(db, changes, now)
    db.executemany("UPDATE members SET version = ? WHERE member_id = ?",
                   [(seq, c[1]) for seq, c in zip(seqs, changes) if c[0] == "member.upsert"])  # fmt: skip
    run_derived(db, pending, now)
    return seqs


def iter_chunks(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
