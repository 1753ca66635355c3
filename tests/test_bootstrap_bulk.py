"""A bootstrap's members are indexed once at the end (edge/bootstrap_bulk.py), and what is stored is the same:
every member's name tokens and blind indexes are there afterwards, lookups find them, and an agent killed in
the middle of the members resumes without losing the tokens of the chunks it had applied."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import msgspec
import pytest

from tenpo.cli import main
from tenpo.cloud.db import Central
from tenpo.cloud.feed import snapshot_chunk
from tenpo.edge import bootstrap_bulk, feed
from tenpo.edge import db as edge_db
from tenpo.edge.config import load_config
from tenpo.edge.keystore import codec as pii_codec
from tenpo.edge.membership import vault
from tenpo.edge.sync import SyncLink
from tenpo.edge.sync_state import ChunkReceived, RequestSnapshot
from tenpo.sandbox import provision_store
from tenpo.shared import crypto
from tenpo.shared.protocol import SnapshotRequest, encode

MEMBERS = 130
NAMES = ["山田 太郎", "佐藤 花子", "鈴木 一郎", "高橋 美咲", "田中 健"]


def _central(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    central = Central(url)
    now = time.time()
    with central.transaction():
        central.executemany(
            "INSERT INTO members(member_id, name, kana, phone, email, card_no, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(f"HQ-{i:05d}", f"{NAMES[i % 5]} {i}", f"カイイン{i}", f"+8190{10_000_000 + i:08d}", f"m{i}@example.jp",
              f"C{i:09d}", now, now) for i in range(MEMBERS)],
        )  # fmt: skip
    central.close()
    return url


def _indexes(conn: object) -> set[str]:
    return {row[0] for row in conn.execute(  # type: ignore[attr-defined]
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'members' AND sql IS NOT NULL")}  # fmt: skip


def _bootstrap(url: str, store: object, stop_after_member_chunks: int | None = None, defer_tokens: bool = False) -> bool:
    """Request and apply chunks as the agent does (40 rows each); False if stopped before the end."""
    central = Central(url)
    progress = feed.snapshot_progress(store)  # type: ignore[arg-type]
    done = 0
    member_chunks = 0
    try:
        while True:
            request = SnapshotRequest(snapshot_id=progress.snapshot_id, entity=progress.entity,
                                      after_key=progress.after_key, done=done, limit=40, stream="s")  # fmt: skip
            chunk = snapshot_chunk(central, "B001", request)
            decoded = feed.decode_snapshot_chunk(encode(chunk))
            progress = feed.apply_snapshot_chunk(store, "B001", decoded, defer_tokens=defer_tokens)  # type: ignore[arg-type]
            done = chunk.progress
            if progress.done:
                return True
            member_chunks += chunk.entity == "members"
            if stop_after_member_chunks is not None and member_chunks >= stop_after_member_chunks:
                return False
    finally:
        central.close()


def test_members_bulk_loaded_are_indexed_and_found_after_a_resumed_bootstrap(tmp_path: Path) -> None:
    url = _central(tmp_path)
    config = load_config(str(provision_store(tmp_path / "boot", "B001", "mqtt://127.0.0.1:1", url)))
    store = edge_db.connect(config.database)
    conn = store.conn
    before = _indexes(conn)
    assert len(before) >= 5, "the blind indexes a lookup uses"

    assert _bootstrap(url, store, stop_after_member_chunks=2) is False  # the agent dies here
    assert _indexes(conn) == set(), "indexes wait for the end of the members"
    store.conn.close()

    store = edge_db.connect(config.database)  # a new agent process resumes
    conn = store.conn
    assert _bootstrap(url, store) is True
    assert _indexes(conn) == before, "the same indexes, created again"
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'member_tokens_load'").fetchone() is None
    assert conn.execute("SELECT count(*) FROM members").fetchone()[0] == MEMBERS

    codec = pii_codec(conn)
    expected = {(token, rank, f"HQ-{i:05d}") for i in range(MEMBERS)
                for token, rank in codec.name_tokens(f"{NAMES[i % 5]} {i}", f"カイイン{i}").items()}  # fmt: skip
    stored = set(conn.execute("SELECT token, rank, member_id FROM member_tokens"))
    assert stored == expected, "every member's name tokens, once each, from before and after the restart"

    assert vault.exact_ids(conn, codec, "+819010000077", 5) == ["HQ-00077"]
    assert vault.exact_ids(conn, codec, "m3@example.jp", 5) == ["HQ-00003"]
    found = vault.name_ids(conn, codec, "佐藤", 200)
    assert sorted(found) == [f"HQ-{i:05d}" for i in range(MEMBERS) if i % 5 == 1]
    plan = " ".join(str(row) for row in conn.execute(
        "EXPLAIN QUERY PLAN SELECT member_id FROM members WHERE phone_idx = x'00'"))  # fmt: skip
    assert "members_phone_idx" in plan


def _name_search_ready(config_path: Path, capsys: pytest.CaptureFixture[str]) -> bool:
    assert main(["edge", "status", "--json", "--config", str(config_path)]) == 0
    return bool(json.loads(capsys.readouterr().out)["name_search_ready"])


def test_a_bootstrap_is_usable_before_its_name_tokens_are_moved_and_a_member_written_meanwhile_keeps_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _central(tmp_path)
    config_path = provision_store(tmp_path / "boot", "B001", "mqtt://127.0.0.1:1", url)
    config = load_config(str(config_path))
    store = edge_db.connect(config.database)
    conn = store.conn
    assert _bootstrap(url, store, defer_tokens=True) is True
    codec = pii_codec(conn)
    assert feed.bootstrapped(store) and bootstrap_bulk.pending(conn)
    assert vault.exact_ids(conn, codec, "+819010000077", 5) == ["HQ-00077"], "exact lookups work at once"
    assert vault.name_ids(conn, codec, "佐藤", 200) == [], "names wait for their tokens"
    assert _name_search_ready(config_path, capsys) is False, "tenpo edge status says so"

    renamed, erased = "HQ-00001", "HQ-00006"  # both 佐藤 before
    with edge_db.transaction(store):
        old = vault.read_person(conn, codec, renamed)
        assert old is not None
        vault.write_person(conn, codec, renamed, dataclasses.replace(old, name="鈴木 次郎"), old)
        vault.erase(conn, erased)
        conn.execute("UPDATE members SET erased = 1 WHERE member_id = ?", (erased,))

    builder = edge_db.connect(config.database, create=False)  # as the agent's thread: its own connection
    try:
        assert bootstrap_bulk.build_tokens(builder.conn, slice_rows=100) > 100, "several slices"
    finally:
        builder.conn.close()
    assert not bootstrap_bulk.pending(conn) and _name_search_ready(config_path, capsys) is True
    for table in (bootstrap_bulk.STAGING, vault.TOKENS_REWRITTEN):
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is None, table
    assert not Path(str(config.database) + bootstrap_bulk.SCRATCH_SUFFIX).exists(), "the scratch file is removed"
    expected = {(token, rank, f"HQ-{i:05d}") for i in range(MEMBERS) if f"HQ-{i:05d}" not in (renamed, erased)
                for token, rank in codec.name_tokens(f"{NAMES[i % 5]} {i}", f"カイイン{i}").items()}  # fmt: skip
    expected |= {(token, rank, renamed) for token, rank in codec.name_tokens("鈴木 次郎", "カイイン1").items()}
    assert set(conn.execute("SELECT token, rank, member_id FROM member_tokens")) == expected
    assert sorted(vault.name_ids(conn, codec, "佐藤", 200)) == [
        f"HQ-{i:05d}" for i in range(MEMBERS) if i % 5 == 1 and f"HQ-{i:05d}" not in (renamed, erased)]  # fmt: skip
    assert renamed in vault.name_ids(conn, codec, "次郎", 5)
    assert bootstrap_bulk.build_tokens(conn) == 0, "nothing left to do"
    store.conn.close()


def test_tokens_staged_by_an_older_agent_are_moved_with_those_computed_now(tmp_path: Path) -> None:
    """An agent upgraded in the middle of a bootstrap finds some members staged with their tokens packed
    (the agent before issue 19 §5 computed them on the way in) and the rest to compute: both end up indexed."""
    url = _central(tmp_path)
    config = load_config(str(provision_store(tmp_path / "boot", "B001", "mqtt://127.0.0.1:1", url)))
    store = edge_db.connect(config.database)
    conn = store.conn
    codec = pii_codec(conn)
    assert _bootstrap(url, store, stop_after_member_chunks=2) is False
    staged = [row[0] for row in conn.execute(f"SELECT member_id FROM {bootstrap_bulk.STAGING}")]
    assert len(staged) == 80 and conn.execute(
        f"SELECT count(*) FROM {bootstrap_bulk.STAGING} WHERE ranks <> ''").fetchone()[0] == 0, "nothing computed yet"
    older = staged[:40]
    with edge_db.transaction(store):
        for member_id in older:
            person = vault.read_person(conn, codec, member_id)
            assert person is not None
            conn.execute(f"UPDATE {bootstrap_bulk.STAGING} SET tokens = ?, ranks = ? WHERE member_id = ?",
                         bootstrap_bulk.packed(member_id, codec.name_tokens(person.name, person.kana))[1:] + (member_id,))
    assert _bootstrap(url, store) is True
    expected = {(token, rank, f"HQ-{i:05d}") for i in range(MEMBERS)
                for token, rank in codec.name_tokens(f"{NAMES[i % 5]} {i}", f"カイイン{i}").items()}  # fmt: skip
    assert set(conn.execute("SELECT token, rank, member_id FROM member_tokens")) == expected
    store.conn.close()


def test_the_next_chunk_is_asked_for_once_before_the_current_one_is_written(tmp_path: Path) -> None:
    url = _central(tmp_path)
    config = load_config(str(provision_store(tmp_path / "boot", "B001", "mqtt://127.0.0.1:1", url)))
    store = edge_db.connect(config.database)
    link = SyncLink(config, store, crypto.load_private_key(config.private_key))
    link.machine.connected = True
    asked: list[SnapshotRequest] = []
    link._publish = lambda kind, body, retain=False: asked.append(body) if kind == "snapshot" else None  # type: ignore[assignment, method-assign, func-returns-value]
    central = Central(url)
    try:
        link._run([RequestSnapshot()])
        assert len(asked) == 1
        served: list[bytes] = []
        while not feed.bootstrapped(store):
            chunk = snapshot_chunk(central, "B001", msgspec.structs.replace(asked[-1], limit=40))
            served.append(encode(chunk))
            before = len(asked)
            link._run(link.machine.handle(ChunkReceived(time.monotonic(), feed.decode_snapshot_chunk(served[-1]))))
            last = chunk.next_key is None and chunk.next_entity is None
            assert len(asked) == before + (0 if last else 1), "one request per chunk, sent before it was written"
            if not last:
                assert asked[-1].done == chunk.progress and asked[-1].after_key == chunk.next_key
        assert len(asked) == len(served) and len({encode(request) for request in asked}) == len(asked)
        assert store.conn.execute("SELECT count(*) FROM members").fetchone()[0] == MEMBERS
        assert link._token_builder is not None, "the agent moves the name tokens after the bootstrap"
        link._token_builder.join(120)
        assert not bootstrap_bulk.pending(store.conn)
        assert sorted(vault.name_ids(store.conn, pii_codec(store.conn), "佐藤", 200)) == [
            f"HQ-{i:05d}" for i in range(MEMBERS) if i % 5 == 1]  # fmt: skip
    finally:
        central.close()
        store.conn.close()


def test_a_stale_copy_of_a_chunk_asks_for_nothing(tmp_path: Path) -> None:
    url = _central(tmp_path)
    config = load_config(str(provision_store(tmp_path / "boot", "B001", "mqtt://127.0.0.1:1", url)))
    store = edge_db.connect(config.database)
    link = SyncLink(config, store, crypto.load_private_key(config.private_key))
    link.machine.connected = True
    asked: list[SnapshotRequest] = []
    link._publish = lambda kind, body, retain=False: asked.append(body) if kind == "snapshot" else None  # type: ignore[assignment, method-assign, func-returns-value]
    central = Central(url)
    try:
        products = snapshot_chunk(central, "B001", SnapshotRequest(limit=40, stream="s"))
        link._run(link.machine.handle(ChunkReceived(time.monotonic(), feed.decode_snapshot_chunk(encode(products)))))
        members = snapshot_chunk(central, "B001", msgspec.structs.replace(asked[-1], limit=40))
        assert members.entity == "members" and len(members.rows) == 40
        link._run(link.machine.handle(ChunkReceived(time.monotonic(), feed.decode_snapshot_chunk(encode(members)))))
        assert len(asked) == 2
        link._run(link.machine.handle(ChunkReceived(time.monotonic(), feed.decode_snapshot_chunk(encode(members)))))
        assert len(asked) == 2, "a duplicate is skipped and asks for nothing more"
        assert store.conn.execute("SELECT count(*) FROM members").fetchone()[0] == 40
    finally:
        central.close()
        store.conn.close()
