"""`tenpo cloud import members|orders FILE`: stream a file into source records, orders and points.

Rows are read one at a time (never the whole file) and handled in chunks of a few hundred, each with its
change-feed entries; a member import commits a few chunks at a time (`COMMIT_ROWS`, see `_run`), an order
import every chunk. A transaction is all or nothing, so an interrupted import can simply be run again: a
row already imported has the same fingerprint and changes nothing.
A chunk of member rows is cleansed, then resolved in file order against what `chunk.ChunkAccess`
read for all of them at once (the decisions are those of resolving row after row).
"""

from __future__ import annotations

import gc
import io
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenpo.cloud.db import Central
from tenpo.cloud.identity import SourceRecord
from tenpo.cloud.identity.compare import forget_primed, prime_features
from tenpo.cloud.ledgers import points_entry
from tenpo.cloud.sales.effects import purchase_change
from tenpo.shared.cleansing import CORRECTED, FLAGGED, UNVERIFIED, FieldQuality, assess_member_record
from tenpo.shared.errors import UserError
from tenpo.shared.field_bounds import MAX_ID_CHARS, kept, too_long
from tenpo.shared.gc_pause import gc_paused

from .access import MemberAccess
from .chunk import ChunkAccess, ChunkCache
from .config import MembersConfig
from .effects import iso_utc
from .formats import (
    CUSTOMER_FIELDS,
    MemberRow,
    Order,
    Rejected,
    detect_encoding,
    jsonl_orders,
    member_rows,
    shopify_orders,
)
from .pipeline import WORKER_MIN_BYTES, AssessedChunk, Assessment, assessed_in_process, assessed_in_worker
from .quality import record_import
from .resolve import attach
from .store import Pending, iter_chunks, publish, row_hash, save_consent, source_hash

Progress = Callable[[int, int], None]  # (bytes read, file size)


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """One row's fate. `member` is the customer record's own outcome on an order row."""

    line: int
    key: str
    status: str  # created, updated, merged, unchanged, rejected
    member_id: str | None = None
    reason: str = ""
    member: str | None = None
    points: int = 0
    quality: Mapping[str, FieldQuality] = field(default_factory=dict)  # every member field's fate in cleansing

    def notes(self) -> dict[str, str]:
        """The fields that were corrected, kept unverified or flagged: {field: "status: rule or reason"}."""
        return {name: f"{q.status}: {q.rule or q.reason}" for name, q in self.quality.items()
                if q.status in (CORRECTED, UNVERIFIED, FLAGGED)}  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"line": self.line, "key": self.key, "status": self.status, "member_id": self.member_id}
        if self.reason:
            data["reason"] = self.reason
        if self.quality:
            data["field_quality"] = {name: q.as_json() for name, q in self.quality.items()}
        if self.member is not None:
            data["member"] = self.member
            data["points"] = self.points
        return data


@dataclass(slots=True)
class ImportReport:
    kind: str
    encoding: str = ""
    rows: list[RowOutcome] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = Counter(row.status for row in self.rows)
        return {status: counts.get(status, 0) for status in ("created", "updated", "merged", "unchanged", "rejected")}

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "encoding": self.encoding, "counts": self.counts(),
                "rows": [row.as_json() for row in self.rows]}  # fmt: skip


@contextmanager
def open_text(path: Path) -> Iterator[tuple[io.TextIOWrapper, Callable[[], int], int, str, bytes]]:
    """The file as decoded lines (encoding detected from its head), its read position and size."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    with raw:
        head = raw.read(65536)
        raw.seek(0)
        encoding = detect_encoding(head)
        size = path.stat().st_size
        # errors="replace": a bad byte spoils its row (rejected with the reason), not the whole file.
        text = io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
        yield text, raw.tell, size, encoding, head


def _erased(db: Central, source: str, source_id: str) -> bool:
    return db.scalar("SELECT 1 FROM member_erased_sources WHERE source_hash = ?", (source_hash(source, source_id),)) is not None


# A member import's transactions. A commit puts every page the transaction changed into the WAL (SQLite) and
# the checkpoints copy them again; the blocking-key, review and golden-record indexes are spread over the whole
# file, so each commit rewrites most of them whatever the chunk's size. Several chunks to a commit (a chunk
# stays the unit of reading ahead) write that much less, while the time the write lock is held, which
# stores' syncs wait on, stays bounded. The feed gets one member.upsert per member a transaction touched.
COMMIT_ROWS = 5_000
COMMIT_SECONDS = 5.0

# SQLite, for the import's connection (the previous values are restored after): each chunk looks up
# candidates all over the block and source tables, and with the default 2 MB page cache a large import reads
# most pages back from the OS again and again; checkpoints at every 4 MB of WAL would copy the same hot index
# pages into the database file after nearly every commit: every 64 MB, each is copied once per checkpoint.
_SQLITE_IMPORT_PRAGMAS = {"cache_size": -524288, "wal_autocheckpoint": 16384}  # KiB (512 MB); pages (64 MB)


@contextmanager
def _import_settings(db: Central) -> Iterator[None]:
    if db.dialect != "sqlite":
        yield
        return
    saved = {name: int(db.scalar(f"PRAGMA {name}")) for name in _SQLITE_IMPORT_PRAGMAS}
    for name, value in _SQLITE_IMPORT_PRAGMAS.items():
        db.execute(f"PRAGMA {name} = {int(value)}")
    try:
        yield
    finally:
        for name, value in saved.items():
            db.execute(f"PRAGMA {name} = {value}")


def _run(db: Central, chunks: Iterable[list[Any]], handle: Callable[[list[Any], float, Pending], list[RowOutcome]],
         report: ImportReport, position: Callable[[], int], size: int, progress: Progress | None,
         on_row: Callable[[RowOutcome], None] | None, per_commit: int = 1,
         settle: Callable[[float], None] | None = None) -> None:
    """`handle` one chunk at a time, `per_commit` chunks to a transaction (fewer when they take over
    COMMIT_SECONDS), then `settle` what they left for the transaction's end, then their feed entries.
    `on_row` and `progress` hear of rows once they are committed."""
    rest = iter(chunks)
    chunk = next(rest, None)
    with _import_settings(db):
        try:
            while chunk is not None:
                done: list[list[RowOutcome]] = []
                opened = time.monotonic()
                pending = Pending()  # the transaction's feed entries: a member its chunks touched is sent once
                with gc_paused(), db.transaction():  # chunks allocate many objects and no cycles worth a collection
                    while True:
                        now = time.time()
                        done.append(handle(chunk, now, pending))
                        if len(done) >= per_commit or time.monotonic() - opened >= COMMIT_SECONDS:
                            break
                        if (chunk := next(rest, None)) is None:
                            break
                    if settle:
                        settle(now)
                    publish(db, pending, now)
                if chunk is not None:  # the transaction was full
                    chunk = next(rest, None)
                for outcomes in done:
                    report.rows += outcomes
                    if on_row:
                        for outcome in outcomes:
                            on_row(outcome)
                if progress:
                    progress(position(), size)
                # What outlives a chunk is mostly the records and features cached for matching, which grow to
                # millions of objects: set aside, the collections between chunks need not walk them again.
                gc.freeze()
        finally:
            gc.unfreeze()  # the CLI's process: nothing else was frozen


def _start(items: Iterator[Any], path: Path) -> Iterator[Any]:
    """Read the header now, so a file of the wrong kind fails before anything is written."""
    try:
        first = next(items)
    except StopIteration:
        return iter(())
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None
    return _chain(first, items)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


# ---------------------------------------------------------------------------- members


def import_members(db: Central, path: Path, config: MembersConfig = MembersConfig(), *, progress: Progress | None = None,
                   batch: int = 500, on_row: Callable[[RowOutcome], None] | None = None,
                   cleanse_in_worker: bool | None = None, commit_rows: int = COMMIT_ROWS) -> ImportReport:
    """A legacy member list: one source record per row, resolved against every channel, `batch` rows to a
    chunk and about `commit_rows` to a transaction (see `_run`).
    `cleanse_in_worker`: cleanse the next chunk in a second process (pipeline.py); by default when the
    file is big enough to pay for it and there is a second core."""
    started = time.time()
    with open_text(path) as (lines, position, size, encoding, _head):
        report = ImportReport("members", encoding)

        seen = ChunkCache()  # a failed chunk ends the import, so what it holds is never used after a rollback;
        # a chunk after someone else wrote members starts afresh (ChunkCache.revalidate)

        def handle(chunk: AssessedChunk, now: float, pending: Pending) -> list[RowOutcome]:
            cleansed = [_cleanse(item, assessment, now, config.match.ignored_email_domains) for item, assessment in chunk]
            seen.revalidate(db)
            db.before_commit(seen.mark)
            rows = [c for c in cleansed if isinstance(c, Cleansed)]
            tables = ChunkAccess(db, config, now, [c.record for c in rows], seen, defer_golden=True,
                                 quality_text={c.record.key: c.quality_text for c in rows})  # fmt: skip
            outcomes = [c if isinstance(c, RowOutcome) else _attach_row(db, c, config, now, pending, tables)
                        for c in cleansed]  # fmt: skip
            tables.finish()
            # The counter as this chunk leaves it, for the next chunk's revalidate even within one transaction:
            # on PostgreSQL others may commit between two chunks of it (ours moves the counter only at its end).
            seen.mark(db)
            forget_primed()
            return outcomes

        def settle(now: float) -> None:
            # Golden records once per transaction, not once per chunk that touched the member: nothing reads
            # them before the feed entries do (a merge brings its own two up to date, ChunkAccess.before_merge).
            ChunkAccess(db, config, now, [], seen).finish()

        if cleanse_in_worker is None:
            cleanse_in_worker = size >= WORKER_MIN_BYTES and (os.cpu_count() or 1) > 1
        chunks = iter_chunks(_start(member_rows(lines), path), batch)
        assess = assessed_in_worker if cleanse_in_worker else assessed_in_process
        assessed = assess(chunks, config.cleansing, config.match.ignored_email_domains)
        _run(db, assessed, handle, report, position, size, progress, on_row, per_commit=max(1, commit_rows // batch),
             settle=settle)
    record_import(db, path.name, report.rows, started)  # the quality report's trend across imports
    return report


@dataclass(frozen=True, slots=True)
class Cleansed:
    """A member row cleansed into its source record, ready to be resolved."""

    item: MemberRow
    record: SourceRecord
    quality: dict[str, FieldQuality]
    prefecture: str | None
    raw_hash: str  # the row's fingerprint (store.row_hash)
    quality_text: str  # store.quality_json(quality)


def _pop_prefecture(clean: dict[str, object]) -> str | None:
    """The prefecture cleansing keeps beside the member fields (its name, or None), taken out of ``clean``."""
    prefecture = clean.pop("prefecture", None)
    assert prefecture is None or isinstance(prefecture, str), prefecture
    return prefecture


def _cleanse(item: MemberRow | Rejected, assessment: Assessment | None, now: float,
             ignored_email_domains: frozenset[str]) -> Cleansed | RowOutcome:  # fmt: skip
    """The row's source record (pure), from its fields' `assessment` (assess_member_record, see pipeline.py):
    a bad field is flagged, never a reason to lose the person."""
    if isinstance(item, Rejected):
        return RowOutcome(item.line, item.key, "rejected", reason=item.reason)
    assert assessment is not None
    clean, quality, raw_hash, features, quality_text = assessment
    prefecture = _pop_prefecture(clean)
    record = SourceRecord.from_clean({**clean, "source": item.source, "source_id": item.source_id,
                                      "verified": item.verified, "custom": item.custom,
                                      "updated_at": item.updated_at or iso_utc(now)}, quality)  # fmt: skip
    prime_features(record, ignored_email_domains, features)  # for matching it, in this chunk
    return Cleansed(item, record, quality, prefecture, raw_hash, quality_text)


def _attach_row(db: Central, row: Cleansed, config: MembersConfig, now: float, pending: Pending,
                tables: MemberAccess) -> RowOutcome:  # fmt: skip
    item = row.item
    key = f"{item.source}:{item.source_id}"
    if tables.erased(row.record.key):
        return RowOutcome(item.line, key, "rejected", reason="this record was erased at the person's request")
    if item.marketing_consent is not None:
        save_consent(db, item.source, item.source_id, {f"marketing:{item.source}": item.marketing_consent}, now)
    done = attach(db, row.record, row.raw_hash, config, now, pending, prefecture=row.prefecture, tables=tables)
    return RowOutcome(item.line, key, done.status, done.member_id, reason=done.link, quality=row.quality)


# ---------------------------------------------------------------------------- orders


def _next_import_seq(db: Central, channel: str) -> int:
    return int(db.scalar(
        "INSERT INTO counters(name, value) VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = counters.value + 1"
        " RETURNING value", (f"import:{channel}",),
    ))  # fmt: skip


def import_orders(db: Central, path: Path, config: MembersConfig = MembersConfig(), *, channel: str = "web",
                  progress: Progress | None = None, batch: int = 100,
                  on_row: Callable[[RowOutcome], None] | None = None) -> ImportReport:
    """Orders (Shopify CSV, or JSON Lines when the file starts with '{'): customer, history and points."""
    with open_text(path) as (lines, position, size, encoding, head):
        jsonl = path.suffix.lower() in (".jsonl", ".ndjson") or head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")
        report = ImportReport("orders", encoding)
        items = jsonl_orders(lines) if jsonl else shopify_orders(lines, channel)

        def handle(chunk: list[Order | Rejected], now: float, pending: Pending) -> list[RowOutcome]:
            return [RowOutcome(item.line, item.key, "rejected", reason=item.reason) if isinstance(item, Rejected)
                    else _import_order(db, item, config, now, pending) for item in chunk]  # fmt: skip

        _run(db, iter_chunks(_start(items, path), batch), handle, report, position, size, progress, on_row)
    return report


def order_too_long(order: Order) -> str | None:
    """Why an order cannot be recorded as it is (an id or a line too long for the feed), or None."""
    if too_long(order.order_id, MAX_ID_CHARS):
        return f"order id: {len(order.order_id)} characters, at most {MAX_ID_CHARS}"
    for number, line in enumerate(order.lines, start=1):
        if too_long(line.sku, MAX_ID_CHARS) or too_long(line.name):
            return f"line {number}: sku or name too long (at most {MAX_ID_CHARS} / 256 characters)"
    return None


def _import_order(db: Central, order: Order, config: MembersConfig, now: float, pending: Pending) -> RowOutcome:
    existing = db.one("SELECT id, row_hash, points, source, source_id FROM member_orders WHERE order_id = ? AND channel = ?",
                      (order.order_id, order.channel))  # fmt: skip
    fingerprint = row_hash(order.raw)
    if existing is not None and existing[1] == fingerprint:
        member = db.scalar("SELECT member_id FROM member_sources WHERE source = ? AND source_id = ?", (existing[3], existing[4]))
        return RowOutcome(order.line, order.key, "unchanged", member, member="unchanged", points=0)
    too_big = order_too_long(order)  # issue 14: ids and line names bound what the feed can carry
    if too_big:
        return RowOutcome(order.line, order.key[:MAX_ID_CHARS], "rejected", reason=too_big)
    raw_customer = {k: order.customer.get(k) or "" for k in CUSTOMER_FIELDS}
    long_fields = {k: v for k, v in raw_customer.items() if too_long(v)}  # kept flagged, not used (issue 14)
    clean, quality = assess_member_record({**raw_customer, **{k: "" for k in long_fields}}, config.cleansing)
    quality.update({k: FieldQuality(FLAGGED, kept(v), reason=too_long(v)) for k, v in long_fields.items()})
    # Flagged values still say a customer was given (their raw text is kept): only an empty customer is refused.
    if not any(raw_customer[f].strip() for f in ("name", "email", "phone")) and not order.customer.get("id"):
        return RowOutcome(order.line, order.key, "rejected", reason="customer: needs a name, an e-mail or a phone",
                          quality=quality)  # fmt: skip
    source_id = order.customer.get("id") or clean["email"] or clean["phone"] or f"order:{order.order_id}"
    assert isinstance(source_id, str)
    if _erased(db, order.channel, source_id):
        return RowOutcome(order.line, order.key, "rejected", reason="the customer was erased at their request")
    prefecture = _pop_prefecture(clean)
    record = SourceRecord.from_clean({**clean, "source": order.channel, "source_id": source_id,
                                      "updated_at": order.ordered_at or iso_utc(now)}, quality)  # fmt: skip
    if order.marketing_consent is not None:
        save_consent(db, order.channel, source_id, {f"marketing:{order.channel}": order.marketing_consent}, now)
    done = attach(db, record, row_hash(raw_customer), config, now, pending, prefecture=prefecture)

    values = (order.channel, source_id, order.ordered_at, order.status, order.total, fingerprint)
    if existing is None:
        order_ref = int(db.scalar(
            "INSERT INTO member_orders(source, source_id, ordered_at, status, total, row_hash, order_id, channel,"
            " imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (*values, order.order_id, order.channel, now),
        ))  # fmt: skip
        awarded, status = 0, "created"
    else:
        order_ref, awarded, status = int(existing[0]), int(existing[2]), "updated"
        db.execute("UPDATE member_orders SET source = ?, source_id = ?, ordered_at = ?, status = ?, total = ?,"
                   " row_hash = ?, imported_at = ? WHERE id = ?", (*values, now, order_ref))  # fmt: skip
        db.execute("DELETE FROM member_order_lines WHERE order_ref = ?", (order_ref,))
    db.executemany("INSERT INTO member_order_lines(order_ref, line_no, sku, jan, name, qty, price) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [(order_ref, n, li.sku, li.jan, li.name, li.qty, li.price) for n, li in enumerate(order.lines, 1)])
    points = config.channel(order.channel).points(order.total, order.status)
    if points != awarded:  # a refund or a correction is a new entry, never a rewrite
        db.execute(*points_entry(
            member_id=done.member_id, delta=points - awarded, kind="accrual" if existing is None else "adjustment",
            ref=f"order:{order.channel}:{order.order_id}", store_id=f"channel:{order.channel}", stream="import",
            store_seq=_next_import_seq(db, order.channel), at=now))  # fmt: skip
        db.execute("UPDATE member_orders SET points = ? WHERE id = ?", (points, order_ref))
        pending.balances.add(done.member_id)
    kind = "refund" if points < 0 or (order.status or "").lower() in ("refunded", "cancelled") else "order"
    pending.events.append(purchase_change(done.member_id, {
        "channel": order.channel, "ref": order.order_id, "kind": kind, "at": order.ordered_at,
        "total": order.total, "points": points}))  # fmt: skip
    return RowOutcome(order.line, order.key, status, done.member_id, reason=done.link, member=done.status,
                      points=points - awarded, quality=quality)
