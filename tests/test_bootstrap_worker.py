"""A large bootstrap's members chunks decoded and sealed by a forked worker (edge/bootstrap_worker.py) give
the same replica as the single-process path, and a worker killed midway loses no member."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from tenpo.cloud.db import Central
from tenpo.cloud.feed import snapshot_chunk
from tenpo.edge import bootstrap_bulk, bootstrap_worker, feed
from tenpo.edge import db as edge_db
from tenpo.edge.config import load_config
from tenpo.edge.keystore import codec as pii_codec
from tenpo.edge.membership import vault
from tenpo.sandbox import provision_store
from tenpo.shared.protocol import ProtocolError, SnapshotRequest, encode

MEMBERS = 230


def _chunks(tmp_path: Path) -> tuple[str, list[bytes]]:
    """HQ's snapshot of MEMBERS members (some with custom fields and consent), 40 rows a chunk, as sent."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    central = Central(url)
    now = time.time()
    with central.transaction():
        central.executemany(
            "INSERT INTO members(member_id, name, kana, phone, email, card_no, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(f"HQ-{i:05d}", f"会員 {i}", f"カイイン{i}", f"+8190{10_000_000 + i:08d}", f"m{i}@example.jp" if i % 3 else None,
              f"C{i:09d}", now, now) for i in range(MEMBERS)],
        )  # fmt: skip
    found: list[bytes] = []
    request = SnapshotRequest(limit=40, stream="s")
    try:
        while True:
            chunk = snapshot_chunk(central, "B001", request)
            found.append(encode(chunk))
            if chunk.next_key is None and chunk.next_entity is None:
                return url, found
            entity = chunk.entity if chunk.next_key is not None else chunk.next_entity
            request = SnapshotRequest(snapshot_id=chunk.snapshot_id, entity=entity, after_key=chunk.next_key,
                                      done=chunk.progress, limit=40, stream="s")  # fmt: skip
    finally:
        central.close()


def _store(tmp_path: Path, url: str, name: str) -> sqlite_utils.Database:
    return edge_db.connect(
        load_config(str(provision_store(tmp_path / name, "B001", "mqtt://127.0.0.1:1", url))).database
    )


def _single(store: sqlite_utils.Database, chunks: list[bytes]) -> None:
    for data in chunks:
        progress = feed.apply_snapshot_chunk(store, "B001", feed.decode_snapshot_chunk(data), defer_tokens=True)
    assert progress.done


def _parallel(
    store: sqlite_utils.Database, chunks: list[bytes], kill_after: int | None = None
) -> bootstrap_worker.Pipeline:
    """As the agent does: every message handed to the worker on arrival (two ahead), taken in order."""
    pipeline = bootstrap_worker.Pipeline(feed.WORKER_READER)
    pipeline.start(pii_codec(store.conn), "B001", bootstrap_bulk.worker_dir(store.conn))
    sent = [pipeline.submit(data) for data in chunks[:2]]
    prepared_chunks = 0
    for k, data in enumerate(chunks):
        if k + 2 < len(chunks):
            sent.append(pipeline.submit(chunks[k + 2]))
        ticket = sent[k]
        if prepared_chunks == kill_after and ticket is not None and ticket.worker.pid is not None:
            os.kill(ticket.worker.pid, signal.SIGKILL)  # two more chunks handed to it, not yet taken
            kill_after = None
        prepared = pipeline.take(sent[k])
        if prepared is not None and prepared.rows >= 0:
            chunk: feed.DecodedChunk = feed.prepared_chunk(data, prepared)
            prepared_chunks += 1
        else:
            chunk = feed.decode_snapshot_chunk(data)
        progress = feed.apply_snapshot_chunk(store, "B001", chunk, defer_tokens=True)
    assert progress.done
    pipeline.stop()
    return pipeline


def _replica(store: sqlite_utils.Database) -> dict[str, Any]:
    """Each member's columns as a clerk would see them: sealed ones opened, blind indexes checked against
    this store's key, timestamps left out; and the members staged for name tokens."""
    codec = pii_codec(store.conn)
    cursor = store.conn.execute("SELECT * FROM members ORDER BY member_id")
    names = [d[0] for d in cursor.description]
    members = {}
    for values in cursor.fetchall():
        row = dict(zip(names, values))
        person = vault.open_person(codec, row["member_id"], row)
        assert (row["phone_idx"], row["phone4_idx"], row["email_idx"], row["card_idx"], row["line_idx"]) == (
            codec.phone_index(person.phone), codec.phone_last4_index(person.phone), codec.email_index(person.email),
            codec.card_index(person.card_no), codec.line_index(person.line_user_id))  # fmt: skip
        plain = {
            k: v for k, v in row.items() if k not in vault.STORED_COLUMNS and k not in ("created_at", "updated_at")
        }
        members[row["member_id"]] = (plain, person)
    staged = sorted(r[0] for r in store.conn.execute(f"SELECT member_id FROM {bootstrap_bulk.STAGING}"))
    return {"members": members, "staged": staged}


def test_the_worker_gives_the_same_replica_as_one_process(tmp_path: Path) -> None:
    url, chunks = _chunks(tmp_path)
    single, parallel = _store(tmp_path, url, "single"), _store(tmp_path, url, "parallel")
    _single(single, chunks)
    pipeline = _parallel(parallel, chunks)
    assert not pipeline.failed
    expected = _replica(single)
    assert len(expected["members"]) == MEMBERS
    assert _replica(parallel) == expected
    assert not Path(bootstrap_bulk.worker_dir(parallel.conn)).exists(), "its scratch files go with it"


def test_a_worker_killed_midway_loses_no_member(tmp_path: Path) -> None:
    url, chunks = _chunks(tmp_path)
    single, parallel = _store(tmp_path, url, "single"), _store(tmp_path, url, "parallel")
    _single(single, chunks)
    pipeline = _parallel(parallel, chunks, kill_after=2)
    assert pipeline.failed, "the rest went the single-process way"
    assert _replica(parallel) == _replica(single)


def test_a_chunk_result_nobody_took_is_not_taken_for_the_next_chunk(tmp_path: Path) -> None:
    url, chunks = _chunks(tmp_path)
    store = _store(tmp_path, url, "parallel")
    first, second = [data for data in chunks if feed.decode_snapshot_chunk(data).entity == "members"][:2]
    pipeline = bootstrap_worker.Pipeline(feed.WORKER_READER)
    pipeline.start(pii_codec(store.conn), "B001", bootstrap_bulk.worker_dir(store.conn))
    pipeline.submit(first)  # e.g. a message the agent stopped before handling
    prepared = pipeline.take(pipeline.submit(second))
    assert prepared is not None
    with sqlite3.connect(prepared.path) as scratch:
        held = [row[0] for row in scratch.execute("SELECT member_id FROM rows ORDER BY rowid")]
    assert held == [row.member_id for row in feed.decode_snapshot_chunk(second).rows]
    pipeline.stop()


def test_a_chunk_nested_too_deep_is_refused_on_the_workers_path_too(tmp_path: Path) -> None:
    """The worker's chunks skip protocol.decode's nesting pre-check (its memory peak): such a message is
    still a protocol error for the agent, and the worker, handed it first, leaves it to the agent."""
    url, _chunks_sent = _chunks(tmp_path)
    store = _store(tmp_path, url, "deep")
    deep = b'{"snapshot_id":"s","entity":"members","rows":[' + b"[" * 5000 + b"]" * 5000 + b'],"total":100000}'
    for decode in (feed.counted_chunk, feed.decode_snapshot_chunk):
        with pytest.raises(ProtocolError):
            decode(deep)
    pipeline = bootstrap_worker.Pipeline(feed.WORKER_READER)
    ticket = pipeline.start(pii_codec(store.conn), "B001", bootstrap_bulk.worker_dir(store.conn), first=deep)
    assert pipeline.take(ticket) == bootstrap_worker.Prepared(-1, "")
    pipeline.stop()
