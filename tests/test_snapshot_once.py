"""A bootstrap applies each snapshot chunk once: the agent asks on connecting and again when HQ
announces itself, and repeats a request that got no answer in time; the answers it did not need are
skipped (tests/test_sync_state.py: and ask for nothing), not applied a second time."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from tenpo.cloud.db import Central
from tenpo.cloud.feed import snapshot_chunk
from tenpo.edge import db as edge_db
from tenpo.edge import feed
from tenpo.shared.changes import MemberUpsert
from tenpo.shared.protocol import SnapshotRequest, encode

MEMBERS = 25


def _central(tmp_path: Path) -> Central:
    central = Central(f"sqlite:///{tmp_path / 'central.db'}")
    now = time.time()
    with central.transaction():
        central.executemany(
            "INSERT INTO members(member_id, name, kana, phone, email, card_no, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(f"HQ-{i:03d}", f"会員 {i}", f"カイイン{i}", None, f"m{i}@example.jp", f"C{i:05d}", now, now)
             for i in range(MEMBERS)],
        )  # fmt: skip
    return central


def _request(replica: edge_db.sqlite_utils.Database) -> SnapshotRequest:
    progress = feed.snapshot_progress(replica)
    done = int(feed.get_meta(replica.conn, "snapshot_done") or 0)
    return SnapshotRequest(progress.snapshot_id, progress.entity, progress.after_key, limit=10, done=done)


def test_a_second_snapshot_and_a_repeated_chunk_are_skipped(tmp_path: Path) -> None:
    central = _central(tmp_path)
    replica = edge_db.connect(str(tmp_path / "store.db"))
    first = snapshot_chunk(central, "S001", _request(replica))
    second = snapshot_chunk(central, "S001", _request(replica))  # the same question, asked twice at start
    assert first.snapshot_id != second.snapshot_id
    assert not feed.apply_snapshot_chunk(replica, "S001", first).stale
    assert feed.apply_snapshot_chunk(replica, "S001", second).stale, "another snapshot's chunk is skipped"

    applied_rows, stale = 0, 0
    asked = _request(replica)
    while True:
        chunk = snapshot_chunk(central, "S001", asked)
        repeat = snapshot_chunk(central, "S001", asked)  # a retry answered too
        progress = feed.apply_snapshot_chunk(replica, "S001", chunk)
        applied_rows += len(chunk.rows)
        if progress.done:
            break
        again = feed.apply_snapshot_chunk(replica, "S001", repeat)
        stale += again.stale
        if repeat.rows:
            assert again.stale, f"rows {repeat.progress - len(repeat.rows)}.. applied twice"
        asked = _request(replica)
    assert applied_rows == MEMBERS
    assert stale >= MEMBERS // 10
    assert replica.conn.execute("SELECT count(*) FROM members").fetchone()[0] == MEMBERS
    assert feed.bootstrapped(replica)



def test_business_writes_stay_fully_synchronous_after_a_chunk(tmp_path: Path) -> None:
    # A chunk commits with synchronous=NORMAL (resumable either way); sales after it must not.
    central = _central(tmp_path)
    replica = edge_db.connect(str(tmp_path / "store.db"))
    assert replica.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    feed.apply_snapshot_chunk(replica, "S001", snapshot_chunk(central, "S001", _request(replica)))
    assert replica.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_chunk_decodes_into_structs_and_a_misfit_row_is_a_dead_letter(tmp_path: Path) -> None:
    central = _central(tmp_path)
    replica = edge_db.connect(str(tmp_path / "store.db"))
    feed.apply_snapshot_chunk(replica, "S001", snapshot_chunk(central, "S001", _request(replica)))  # products
    members = snapshot_chunk(central, "S001", _request(replica))
    assert members.entity == "members" and len(members.rows) == 10
    assert all(isinstance(row, MemberUpsert) for row in feed.decode_snapshot_chunk(encode(members)).rows)

    wire = msgspec.json.decode(encode(members))
    wire["rows"][3]["version"] = "three"  # one row HQ got wrong: the other nine still apply
    received = feed.decode_snapshot_chunk(msgspec.json.encode(wire))
    assert not feed.apply_snapshot_chunk(replica, "S001", received).stale
    assert replica.conn.execute("SELECT count(*) FROM members").fetchone()[0] == 9
    (reason,) = replica.conn.execute("SELECT reason FROM dead_letters").fetchone()
    assert "members row 3" in reason and "version" in reason
