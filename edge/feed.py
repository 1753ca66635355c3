"""Apply HQ's downstream change feed and bootstrap snapshots to the store replica.

Rows carry the HQ change sequence that last wrote them (``version``); an upsert only wins over an
older version, so replaying the feed after a snapshot, or receiving a page twice, never moves a row
backwards. The cursor and the rows it covers commit in the same transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import GenericAlias
from typing import Any

import msgspec
import sqlite_utils

from tenpo.edge import bootstrap_bulk as bootstrap_bulk  # issue 19: a bootstrap's members indexed once, at the end
from tenpo.edge import bootstrap_worker as bootstrap_worker  # issue 19 §5: chunks sealed by a forked process
from tenpo.edge import deliveries as deliveries  # issue 18 §7: delivery.upsert
from tenpo.edge import loyalty  # issue 17 (H7): member.loyalty
from tenpo.edge import recommendations as recommendations  # issue 17 (H6): member.recommendations
from tenpo.edge.ble import ids as beacon_ids  # issue 14 (H5, H12): member.beacon_keys
from tenpo.edge.db import transaction
from tenpo.edge.inspection import feed as inspection
from tenpo.edge.keystore import codec as pii_codec  # issue 14 (H2): personal data sealed
from tenpo.edge.ledgers import post_stock
from tenpo.edge.membership import feed as membership
from tenpo.edge.membership import vault
from tenpo.edge.outbox import get_meta, read_counter, set_counter, set_meta
from tenpo.edge.reservations import feed as reservations  # issue 18
from tenpo.shared.changes import (
    SNAPSHOT_ROWS,
    MemberErase,
    MemberUpsert,
    PointsBalance,
    ProductUpsert,
    StockCorrection,
    StockLevel,
    UnknownChange,
    decode_change,
    rows_of,
)
from tenpo.shared.events import PayloadMismatch, convert
from tenpo.shared.gc_pause import gc_paused
from tenpo.shared.protocol import Change, ChangePage, ProtocolError, SnapshotChunk, decode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PageResult:
    applied: int
    cursor: int
    gap: bool  # the page starts after our cursor: ask for what is missing
    behind: bool  # HQ has more than we hold now


def apply_page(db: sqlite_utils.Database, store_id: str, page: ChangePage) -> PageResult:
    with transaction(db) as conn:
        cursor = read_counter(conn, "cursor")
        if page.from_seq > cursor:
            return PageResult(0, cursor, gap=True, behind=True)
        applied = 0
        for change in page.changes:
            if change.seq <= cursor:
                continue
            if change.store is None or change.store == store_id:
                _apply_change(conn, store_id, change)
                applied += 1
        cursor = max(cursor, page.to_seq)
        set_counter(conn, "cursor", cursor)
    return PageResult(applied, cursor, gap=False, behind=page.latest > cursor)


def _apply_change(conn: sqlite3.Connection, store_id: str, change: Change) -> None:
    handler = CHANGE_HANDLERS.get(change.kind)
    if handler is None:
        # A newer HQ may send kinds this agent does not know yet: keep them, skip them.
        _dead_letter(conn, f"change {change.seq}", f"unknown change kind {change.kind!r}", change.data)
        return
    try:
        row = decode_change(change.kind, change.data)
    except (UnknownChange, PayloadMismatch) as exc:
        _dead_letter(conn, f"change {change.seq}", f"{change.kind}: {exc}", change.data)
        return
    try:
        conn.execute("SAVEPOINT change")
        handler(conn, store_id, [row], change.seq)
        conn.execute("RELEASE change")
    except (KeyError, TypeError, ValueError, sqlite3.Error) as exc:
        conn.execute("ROLLBACK TO change")
        conn.execute("RELEASE change")
        _dead_letter(conn, f"change {change.seq}", f"{change.kind}: cannot apply ({exc!r})", change.data)


class _RawRowsChunk(SnapshotChunk, frozen=True):
    rows: msgspec.Raw  # type: ignore[assignment]  # decoded in a second step, by entity


class DecodedChunk(SnapshotChunk, frozen=True):
    """A snapshot chunk as the store decodes it: ``rows`` are the entity's catalogue Structs, decoded
    straight from the JSON (a fifth of the time of dicts converted one by one), or the JSON objects when
    a row does not fit (each converted on its own then, and a misfit becomes a dead letter)."""

    rows: list[Any]


_ROW_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    # GenericAlias(list, (struct,)) is list[struct], spelled so for a class held in a variable
    entity: msgspec.json.Decoder(GenericAlias(list, (struct,)))
    for entity, struct in SNAPSHOT_ROWS.items()
}
_JSON_OBJECTS = msgspec.json.Decoder(list[dict[str, Any]])


class PreparedChunk(DecodedChunk, frozen=True):
    """A members chunk the bootstrap worker decoded and sealed (edge/bootstrap_worker.py): ``rows`` left
    empty, ``data`` the message as received (applied the usual way if a member is held already)."""

    data: bytes = b""
    prepared: int = 0  # its rows
    path: str = ""  # the worker's scratch file


def prepared_chunk(data: bytes, prepared: bootstrap_worker.Prepared) -> PreparedChunk:
    """The chunk's fields but its rows (msgspec skips them as raw JSON) and what the worker made of them."""
    wire: _RawRowsChunk = bootstrap_worker.lean_decode(data, _RawRowsChunk)
    fields = {**msgspec.structs.asdict(wire), "rows": []}
    return PreparedChunk(**fields, data=data, prepared=prepared.rows, path=prepared.path)


class _CountedChunk(SnapshotChunk, frozen=True):
    rows: list[msgspec.Raw]  # type: ignore[assignment]  # each row left raw: counted, not decoded


def counted_chunk(data: bytes) -> PreparedChunk:
    """The chunk's fields and the number of its rows, which the worker decodes (a tenth of the decoding)."""
    wire = bootstrap_worker.lean_decode(data, _CountedChunk)
    fields = {**msgspec.structs.asdict(wire), "rows": []}
    return PreparedChunk(**fields, data=data, prepared=len(wire.rows))


def chunk_rows(chunk: SnapshotChunk) -> int:
    return chunk.prepared if isinstance(chunk, PreparedChunk) else len(chunk.rows)


def decode_snapshot_chunk(data: bytes) -> DecodedChunk:
    """One snapshot message; not JSON, too deep or not a chunk → ProtocolError, like any message."""
    return _typed_rows(decode(data, _RawRowsChunk))


def _worker_decode(data: bytes) -> DecodedChunk:
    """The bootstrap worker's ``decode_snapshot_chunk`` (``bootstrap_worker.lean_decode``): a message it
    cannot decode goes back to the agent, whose ``decode_snapshot_chunk`` reports it."""
    return _typed_rows(bootstrap_worker.lean_decode(data, _RawRowsChunk))


def _typed_rows(wire: _RawRowsChunk) -> DecodedChunk:
    typed = _ROW_DECODERS.get(wire.entity)
    try:
        rows = typed.decode(wire.rows) if typed is not None else _JSON_OBJECTS.decode(wire.rows)
    except msgspec.ValidationError:
        try:
            rows = _JSON_OBJECTS.decode(wire.rows)
        except msgspec.ValidationError as exc:
            raise ProtocolError(f"schema: {exc}") from exc
    return DecodedChunk(**{**msgspec.structs.asdict(wire), "rows": rows})


def _snapshot_rows(conn: sqlite3.Connection, chunk: SnapshotChunk) -> list[Any]:
    """The chunk's rows as their Structs; a row that does not fit is a dead letter, the rest apply."""
    struct = SNAPSHOT_ROWS[chunk.entity]
    if chunk.rows and isinstance(chunk.rows[0], struct):  # all decoded straight into Structs
        return chunk.rows
    rows = []
    for n, data in enumerate(chunk.rows):
        try:
            rows.append(convert(data, struct))
        except PayloadMismatch as exc:
            _dead_letter(conn, f"snapshot {chunk.snapshot_id}", f"{chunk.entity} row {n}: {exc}", data)
    return rows


def _dead_letter(conn: sqlite3.Connection, source: str, reason: str, payload: Any) -> None:
    log.warning("dead letter from %s: %s", source, reason)
    conn.execute(
        "INSERT INTO dead_letters(source, reason, payload, created_at) VALUES (?, ?, ?, ?)",
        (source, reason, json.dumps(payload, ensure_ascii=False, default=str), time.time()),
    )


# ---------------------------------------------------------------------------- per-kind upserts
# Each takes many rows so a snapshot chunk is one executemany; ``version`` None means "use row.version".


@rows_of(ProductUpsert)
def _upsert_products(conn: sqlite3.Connection, store_id: str, rows: list[ProductUpsert], version: int | None) -> None:
    now = time.time()
    conn.executemany(
        "INSERT INTO products(sku, jan, name, price, tax_class, style, colour, size, version, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(sku) DO UPDATE SET jan = excluded.jan,"
        " name = excluded.name, price = excluded.price, tax_class = excluded.tax_class, style = excluded.style,"
        " colour = excluded.colour, size = excluded.size, version = excluded.version, updated_at = excluded.updated_at "
        "WHERE products.version < excluded.version",
        [
            (r.sku, r.jan, r.name, r.price, r.tax_class, r.style, r.colour, r.size, version or r.version, now)
            for r in rows
        ],
    )


def member_columns(r: MemberUpsert, store_id: str, seq: int, now: float) -> tuple[tuple[Any, ...], vault.Personal]:
    """A member's plain columns (consent, custom, home_store, points_hq, points_through, version, updated_at)
    and its personal fields, to be sealed (also by edge/bootstrap_worker.py, for a bootstrap's chunks)."""
    plain_custom, personal = vault.split_custom(r.custom)
    # A bootstrap writes every member: most have no consent or custom fields, so "{}" skips json.dumps.
    row = (json.dumps(r.consent) if r.consent else "{}",
           json.dumps(plain_custom, ensure_ascii=False) if plain_custom else "{}",
           r.home_store, r.points, (r.through or {}).get(store_id, 0), seq, now)  # fmt: skip
    return row, vault.Personal(r.name, r.kana, r.phone, r.email, r.card_no, r.line_user_id, personal or None)


# What a bootstrap worker needs of this module to build the rows the single-process path builds.
WORKER_READER = bootstrap_worker.Reader(_worker_decode, member_columns)


@rows_of(MemberUpsert)
def _upsert_members(conn: sqlite3.Connection, store_id: str, rows: list[MemberUpsert], version: int | None) -> None:
    """Personal fields are sealed on the way in (edge/membership/vault.py); an older version never wins.
    Members new to the store (a whole bootstrap chunk) are written with one executemany per table."""
    now = time.time()
    codec = pii_codec(conn)
    held: dict[str, int] = {}
    ids = [r.member_id for r in rows]
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        held.update(conn.execute(
            f"SELECT member_id, version FROM members WHERE member_id IN ({', '.join('?' * len(part))})", part))  # fmt: skip
    fresh: list[tuple[tuple[Any, ...], str, vault.Personal]] = []  # (row's plain columns, member id, person)
    staged = bootstrap_bulk.staging(conn, snapshot=version is None)  # issue 19: a snapshot's, indexed at the end

    def flush() -> None:
        if not fresh:
            return
        # issue 19: a batch per column
        sealed = vault.sealed_rows(codec, [member_id for _row, member_id, _p in fresh], [p for _row, _m, p in fresh])
        last = bootstrap_bulk.last_rowid(conn) if staged else 0
        conn.executemany(
            "INSERT INTO members(consent, custom, home_store, points_hq, points_through, version, updated_at,"
            f" beacon_secret, member_id, created_at, provisional, erased, {', '.join(vault.STORED_COLUMNS)})"
            f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, {', '.join('?' * len(vault.STORED_COLUMNS))})",
            # issue 14: beacon ids (edge/ble/ids.py), never the secret
            [(*row, None, member_id, now, *values) for (row, member_id, _person), values in zip(fresh, sealed)],
        )
        if staged:  # issue 19 §5: their name tokens are computed after the bootstrap (bootstrap_bulk.build_tokens)
            bootstrap_bulk.stage_inserted(conn, last)
        else:
            name_tokens = codec.name_tokens
            conn.executemany("INSERT OR IGNORE INTO member_tokens(token, rank, member_id) VALUES (?, ?, ?)",
                             [(token, rank, member_id) for _row, member_id, p in fresh
                              for token, rank in name_tokens(p.name, p.kana).items()])  # fmt: skip
        fresh.clear()

    for r in rows:
        seq = version or r.version
        if r.member_id in held and held[r.member_id] >= seq:
            continue
        row, person = member_columns(r, store_id, seq, now)
        if r.member_id not in held:
            fresh.append((row, r.member_id, person))
            held[r.member_id] = seq
            continue
        flush()  # a second row for a member of this batch must see the first
        old = vault.read_person(conn, codec, r.member_id)
        conn.execute(
            "UPDATE members SET consent = ?, custom = ?, home_store = ?, points_hq = ?, points_through = ?,"
            " version = ?, updated_at = ?, beacon_secret = ?, provisional = 0, erased = 0 WHERE member_id = ?",
            (*row, None, r.member_id),
        )
        vault.write_person(conn, codec, r.member_id, person, old)
        held[r.member_id] = seq
    flush()


@rows_of(MemberErase)
def _erase_members(conn: sqlite3.Connection, store_id: str, rows: list[MemberErase], version: int | None) -> None:
    for r in rows:
        vault.erase(conn, r.member_id)
    conn.executemany(
        "UPDATE members SET beacon_secret = NULL, consent = '{}', custom = '{}', erased = 1,"
        " version = ?, updated_at = ? WHERE member_id = ?",
        [(version or r.version, time.time(), r.member_id) for r in rows],
    )
    deliveries.erase_members(conn, [r.member_id for r in rows])  # issue 18 §7 (H4): their addresses go too


@rows_of(PointsBalance)
def _points_balances(conn: sqlite3.Connection, store_id: str, rows: list[PointsBalance], version: int | None) -> None:
    conn.executemany(
        "UPDATE members SET points_hq = ?, points_through = ? WHERE member_id = ?",
        [(r.balance, (r.through or {}).get(store_id, 0), r.member_id) for r in rows],
    )


@rows_of(StockLevel)
def _stock_levels(conn: sqlite3.Connection, store_id: str, rows: list[StockLevel], version: int | None) -> None:
    # Our own on-hand is our ledger; HQ's echo of it is always a little behind.
    conn.executemany(
        "INSERT INTO remote_stock(store_id, sku, on_hand, as_of, version) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(store_id, sku) DO UPDATE SET on_hand = excluded.on_hand, as_of = excluded.as_of,"
        " version = excluded.version WHERE remote_stock.version < excluded.version",
        [(r.store_id, r.sku, r.on_hand, r.as_of or time.time(), version or r.version)
         for r in rows if r.store_id != store_id],
    )  # fmt: skip


@rows_of(StockCorrection)
def _stock_corrections(
    conn: sqlite3.Connection, store_id: str, rows: list[StockCorrection], version: int | None
) -> None:
    """An entry HQ made in this store's ledger (a resolved oversold conflict): no event, HQ has it."""
    for r in rows:
        if r.store_id == store_id:
            post_stock(conn, sku=r.sku, delta=r.delta, reason=r.reason, ref=r.ref, report=False)


@rows_of(StockLevel)
def _snapshot_stock(conn: sqlite3.Connection, store_id: str, rows: list[StockLevel], version: int | None) -> None:
    """A new or wiped store takes what earlier lives of its database left at HQ as an opening balance
    (no event: HQ has those entries already)."""
    known = {sku for (sku,) in conn.execute("SELECT sku FROM products")}
    for r in rows:
        if r.store_id == store_id and r.opening and r.sku in known:
            post_stock(conn, sku=r.sku, delta=r.opening, reason="opening", ref="bootstrap", report=False)
    _stock_levels(conn, store_id, rows, version)


# handler(conn, store_id, rows decoded into their catalogue Structs, change seq or None in a snapshot)
Handler = Callable[[sqlite3.Connection, str, list[Any], int | None], None]

CHANGE_HANDLERS: dict[str, Handler] = {
    "product.upsert": _upsert_products,
    "member.upsert": _upsert_members,
    "member.erase": _erase_members,
    "points.balance": _points_balances,
    "stock.level": _stock_levels,
    "stock.correction": _stock_corrections,
}

SNAPSHOT_HANDLERS: dict[str, Handler] = {
    "products": _upsert_products,
    "members": _upsert_members,
    "stock": _snapshot_stock,
}


def _register_area_handlers() -> None:
    """Areas own the change kinds they define (ASNs, member merges...)."""
    for area in (inspection, membership, reservations, recommendations, beacon_ids, deliveries):
        overlap = set(area.CHANGE_HANDLERS) & set(CHANGE_HANDLERS)
        assert not overlap, f"change kinds handled twice: {overlap}"
        CHANGE_HANDLERS.update(area.CHANGE_HANDLERS)
        SNAPSHOT_HANDLERS.update(getattr(area, "SNAPSHOT_HANDLERS", {}))


_register_area_handlers()
CHANGE_HANDLERS.update(loyalty.CHANGE_HANDLERS)  # issue 17 (H7): member.loyalty (rank, multiplier, lots)
SNAPSHOT_HANDLERS.update(loyalty.SNAPSHOT_HANDLERS)  # issue 17 (H7): the loyalty entity of a bootstrap


# ---------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True, slots=True)
class SnapshotProgress:
    snapshot_id: str | None
    entity: str | None
    after_key: str | None
    done: bool
    stale: bool = False  # the chunk was not applied: another snapshot's, or rows this replica already holds


def bootstrapped(db: sqlite_utils.Database) -> bool:
    return get_meta(db.conn, "bootstrapped") == "1"


def snapshot_progress(db: sqlite_utils.Database) -> SnapshotProgress:
    conn = db.conn
    return SnapshotProgress(
        get_meta(conn, "snapshot_id"),
        get_meta(conn, "snapshot_entity"),
        get_meta(conn, "snapshot_after"),
        bootstrapped(db),
    )


@contextmanager
def _snapshot_durability(conn: sqlite3.Connection) -> Iterator[None]:
    """A chunk commits with synchronous=NORMAL, then the connection's own setting (FULL) returns.

    In WAL mode NORMAL loses nothing when the process is killed; a power cut may undo the last chunks,
    and their rows and the resume point roll back together, so the bootstrap asks for them again. The
    fsync per chunk was a tenth of a bootstrap.
    """
    previous = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    conn.execute("PRAGMA synchronous = NORMAL")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA synchronous = {previous}")


def apply_snapshot_chunk(
    db: sqlite_utils.Database, store_id: str, chunk: SnapshotChunk, defer_tokens: bool = False
) -> SnapshotProgress:
    """Apply one chunk and remember where to resume, in one transaction. ``defer_tokens``: the members'
    name tokens are left for ``bootstrap_bulk.build_tokens`` (the agent; issue 19 §5).

    A chunk that does not start where the replica stands is stale and skipped (``stale`` set, so the
    caller does not ask again on its behalf): the snapshot of a second request the agent made while the
    first was on its way (on connecting and again on HQ's announcement), or an answer to a repeated
    request. HQ numbers each chunk's rows from the ``done`` count the request carried.
    """
    if isinstance(chunk, PreparedChunk):
        prepared = bootstrap_worker.Prepared(chunk.prepared, chunk.path)
        with bootstrap_worker.attached(db.conn, prepared):
            return _apply_snapshot_chunk(db, store_id, chunk, defer_tokens)
    return _apply_snapshot_chunk(db, store_id, chunk, defer_tokens)


def _apply_snapshot_chunk(db: sqlite_utils.Database, store_id: str, chunk: SnapshotChunk,
                          defer_tokens: bool) -> SnapshotProgress:  # fmt: skip
    handler = SNAPSHOT_HANDLERS.get(chunk.entity)
    with gc_paused(), _snapshot_durability(db.conn), transaction(db) as conn:
        current = get_meta(conn, "snapshot_id")
        done = int(get_meta(conn, "snapshot_done") or 0) if current is not None else 0
        if (current is not None and current != chunk.snapshot_id) or chunk.progress - chunk_rows(chunk) != done:
            return replace(snapshot_progress(db), stale=True)
        if isinstance(chunk, PreparedChunk):  # members, decoded and sealed by the worker
            bootstrap_bulk.begin(conn)
            last = bootstrap_bulk.last_rowid(conn)
            if bootstrap_worker.insert(conn, bootstrap_worker.Prepared(chunk.prepared, chunk.path)):
                bootstrap_bulk.stage_inserted(conn, last)
            else:  # a member held already: row by row, as the single-process path does
                whole = decode_snapshot_chunk(chunk.data)
                handler(conn, store_id, _snapshot_rows(conn, whole), None)  # type: ignore[misc]
        elif handler is None or chunk.entity not in SNAPSHOT_ROWS:
            _dead_letter(conn, f"snapshot {chunk.snapshot_id}", f"unknown entity {chunk.entity!r}", chunk.rows[:1])
        elif chunk.rows:
            if chunk.entity == "members":
                bootstrap_bulk.begin(conn)
            handler(conn, store_id, _snapshot_rows(conn, chunk), None)
        if chunk.entity == "members" and chunk.next_key is None:
            bootstrap_bulk.finish(conn, defer_tokens)
        set_meta(conn, "snapshot_id", chunk.snapshot_id)
        set_meta(conn, "snapshot_as_of", str(chunk.as_of))
        set_meta(conn, "snapshot_done", str(chunk.progress))
        if chunk.next_key is not None:
            set_meta(conn, "snapshot_entity", chunk.entity)
            set_meta(conn, "snapshot_after", chunk.next_key)
        elif chunk.next_entity is not None:
            set_meta(conn, "snapshot_entity", chunk.next_entity)
            set_meta(conn, "snapshot_after", None)
        else:
            # Finished: the change feed resumes right after the snapshot's starting point.
            set_counter(conn, "cursor", max(read_counter(conn, "cursor"), chunk.as_of))
            bootstrap_bulk.finish(conn, defer_tokens)  # issue 19: whatever a members entity left deferred
            for key in ("snapshot_id", "snapshot_entity", "snapshot_after", "snapshot_as_of", "snapshot_done"):
                set_meta(conn, key, None)
            set_meta(conn, "bootstrapped", "1")
    return snapshot_progress(db)
