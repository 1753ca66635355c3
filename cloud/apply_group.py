"""Group commit (issue 19): batches waiting at the aggregator, applied in one transaction with one COMMIT.

Each batch's COMMIT waits for its WAL flush before the store is acknowledged; when several batches wait (a
store's window of in-flight batches, several stores' after an outage) one flush can cover them all. A store's
batches in the group are taken one after another exactly as ``apply_batch`` takes them (its row locked, what
it already has skipped, a gap stops it), and the events they bring are written as one set: one events insert,
one stock statement, one progress update per store. Every batch's Ack is returned only after the COMMIT, so
nothing is acknowledged that is not durable.

An effect keyed to run once per apply (``Plan.hooks``) runs once for the whole group with its last event's data,
as within one batch: a member's record re-resolved from the store's latest copy, for instance. An accepted
inspection has a hook of its own, so the first one closes its ASN, as applied alone.

If anything in the group fails, the whole transaction rolls back and the caller applies each batch on its
own with ``apply_batch`` (which dead-letters a failing event alone, as before): a group never changes which
events are applied or dead-lettered, only how many flushes they share.

The group's store rows are locked at once, in store-id order, before anything else the transaction locks (the
change counter, the audit chain): two aggregators' groups, or a group and a single batch, cannot wait on each
other in opposite orders.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tenpo.cloud.apply import Taken, _transaction, take_next, write_taken
from tenpo.cloud.db import Central
from tenpo.cloud.plan import Origin
from tenpo.shared.protocol import Ack, Event, EventBatch

MAX_GROUP_EVENTS = 8_000  # events of one group: 16 batches of 500 (the aggregator's queue), a few MB of arrays


@dataclass(frozen=True, slots=True)
class Waiting:
    """A batch received and opened (signature checked), waiting to be applied."""

    store_id: str
    batch: EventBatch
    topic: str = ""


@dataclass(slots=True)
class _Store:
    """One store's part of the group: its applied mark as the batches before move it, the events they bring."""

    store_id: str
    stream: str | None
    last: int
    topic: str = ""
    backlog: int = 0
    taken: bool = False  # a batch was taken: its progress (last seen, backlog) is recorded even with no event
    todo: list[Event] = field(default_factory=list)


def apply_batches(db: Central, waiting: Sequence[Waiting], applied_by: str = "") -> list[Ack]:
    """Apply the waiting batches in one transaction; their Acks, in the order given, once it has committed.
    Raises whatever a batch raises (nothing of the group is then applied): apply each alone instead."""
    now = time.time()
    db.ensure_history_months(now)
    acks: list[Ack | None] = [None] * len(waiting)
    with _transaction(db, one_by_one=False):
        rows = _lock_stores(db, sorted({item.store_id for item in waiting}))
        store: _Store | None = None
        for i in sorted(range(len(waiting)), key=lambda i: waiting[i].store_id):  # stable: a store's in arrival order
            item = waiting[i]
            if store is None or store.store_id != item.store_id:
                _write(db, store, now, applied_by)
                row = rows.get(item.store_id)
                if row is None:
                    acks[i], store = Ack(item.batch.stream, 0, error="unknown store"), None
                    continue
                store = _Store(item.store_id, *row)
            if store.stream != item.batch.stream and store.todo:  # a new stream: the old one's events go first
                _write(db, store, now, applied_by)
                store.taken, store.todo = False, []
            taken = take_next(db, item.topic, item.store_id, store.stream, store.last, item.batch)
            if isinstance(taken, Ack):
                acks[i] = taken
                continue
            _take(store, item, taken)
            acks[i] = Ack(item.batch.stream, taken.last, gap=taken.gap)
        _write(db, store, now, applied_by)
    return [ack if ack is not None else Ack("", 0, error="not applied") for ack in acks]


def groups(waiting: Sequence[Waiting], limit: int = MAX_GROUP_EVENTS) -> list[list[Waiting]]:
    """Consecutive runs of at most ``limit`` events (a single larger batch is a group of its own)."""
    out: list[list[Waiting]] = []
    size = limit
    for item in waiting:
        n = len(item.batch.events)
        if size + n > limit:
            out.append([])
            size = 0
        out[-1].append(item)
        size += n
    return out


def _lock_stores(db: Central, store_ids: list[str]) -> dict[str, tuple[str | None, int]]:
    """Every store's row of the group, locked in id order before the first write (which takes the change counter's
    lock): a group waiting for a store's row never holds a lock that store's own batch waits for."""
    marks = ", ".join("?" * len(store_ids))
    rows = db.all(f"SELECT store_id, stream, last_applied_seq FROM stores WHERE store_id IN ({marks})"  # noqa: S608
                  " ORDER BY store_id" + db.lock_suffix(), store_ids)  # fmt: skip
    return {row[0]: (row[1], int(row[2])) for row in rows}


def _take(store: _Store, item: Waiting, taken: Taken) -> None:
    store.stream, store.last, store.topic, store.backlog = taken.stream, taken.last, item.topic, item.batch.backlog
    store.taken = True
    store.todo += taken.todo


def _write(db: Central, store: _Store | None, now: float, applied_by: str) -> None:
    if store is None or not store.taken or store.stream is None:
        return
    write_taken(db, store.topic, Origin(store.store_id, store.stream), store.last, now, store.backlog, store.todo,
                applied_by)  # fmt: skip
