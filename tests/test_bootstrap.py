"""A new store bootstraps its replica from a chunked snapshot, and resumes an interrupted one."""

from __future__ import annotations

import time
from pathlib import Path

from tenpo.cloud.changes import member_record, record_changes
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.config import load_config
from tenpo.edge.outbox import get_meta, read_counter
from tenpo.sandbox import aggregator_process, provision_store, store_process, wait_until

MEMBERS = 100_000


def populate_members(central: Central, count: int) -> None:
    now = time.time()
    rows = [
        (f"HQ-{i:07d}", f"会員 {i}", f"カイイン{i}", f"+8190{10_000_000 + i:08d}", f"m{i}@example.jp", f"C{i:09d}", now, now)
        for i in range(count)
    ]
    with central.transaction():
        central.executemany(
            "INSERT INTO members(member_id, name, kana, phone, email, card_no, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        changes = [("member.upsert", r[0], None, {"member_id": r[0], "version": 0}) for r in rows[:10]]
        record_changes(central, changes, now)  # the feed has moved on before the store exists


def rename_member(central: Central, member_id: str, name: str) -> None:
    with central.transaction():
        central.execute("UPDATE members SET name = ? WHERE member_id = ?", (name, member_id))
        record = member_record(central, member_id)
        (seq,) = record_changes(central, [("member.upsert", member_id, None, {**record, "version": 0})], time.time())
        central.execute("UPDATE members SET version = ? WHERE member_id = ?", (seq, member_id))


def test_new_store_bootstraps_100k_members_and_resumes_after_interruption(tmp_path: Path, broker, sqlite_url) -> None:
    central = Central(sqlite_url)
    populate_members(central, MEMBERS)
    config_path = provision_store(tmp_path / "S009", "S009", broker.url, sqlite_url)
    config = load_config(str(config_path))
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    db = edge_db.connect(config.database)

    progress = lambda: int(get_meta(db.conn, "snapshot_done") or 0)  # noqa: E731
    wait_until(lambda: progress() >= 20_000, 60, interval=0.01, what="part of the snapshot")
    agent.kill()  # power cut in the middle of the bootstrap
    done_before = progress()
    assert 0 < done_before < MEMBERS
    assert get_meta(db.conn, "bootstrapped") is None
    rows_before = db.conn.execute("SELECT count(*) FROM members").fetchone()[0]
    assert rows_before == done_before, "every chunk applied is recorded with its progress, in one transaction"

    # HQ changes a member the store already holds while the store is down.
    rename_member(central, "HQ-0000001", "改名 花子")

    agent = store_process(config_path).start()
    wait_until(lambda: get_meta(db.conn, "bootstrapped") == "1", 120, what="bootstrap to finish")
    assert db.conn.execute("SELECT count(*) FROM members").fetchone()[0] == MEMBERS
    latest = int(central.scalar("SELECT value FROM counters WHERE name = 'change'"))
    wait_until(lambda: read_counter(db.conn, "cursor") == latest, 30, what="the feed to resume after the snapshot")
    renamed = replica.find_members(db, "C000000001")
    assert [m.name for m in renamed] == ["改名 花子"]
    assert [m.member_id for m in replica.find_members(db, "090-1009-9999")] == ["HQ-0099999"]
    agent.terminate()
    aggregator.terminate()
    central.close()


def test_a_store_joining_late_gets_the_open_asns_in_its_snapshot(tmp_path: Path, broker, sqlite_url) -> None:
    from tenpo.cloud.asn.admin import import_asns

    central = Central(sqlite_url)
    provision_store(tmp_path / "S002", "S002", broker.url, sqlite_url)  # the ASN's destination
    asn_file = tmp_path / "asn.json"
    asn_file.write_text('[{"shipment_id": "SHP-1", "store": "S002", "epcs": ["3034257BF7194E4000001A85"]}]')
    report = import_asns(central, asn_file)
    assert report.created == ["SHP-1"]
    config_path = provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url)
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    db = edge_db.connect(load_config(str(config_path)).database)
    wait_until(lambda: get_meta(db.conn, "bootstrapped") == "1", 30, what="bootstrap")
    # A neighbour's open delivery: this store needs it to recognise cross-reads at its own dock.
    assert db.conn.execute("SELECT shipment_id, store_id FROM asns").fetchall() == [("SHP-1", "S002")]
    agent.terminate()
    aggregator.terminate()
    central.close()


def test_bootstrap_shows_a_progress_bar_on_a_terminal(tmp_path: Path, broker, sqlite_url) -> None:
    import os
    import pty
    import select
    import signal
    import sys

    central = Central(sqlite_url)
    populate_members(central, 20_000)
    config_path = provision_store(tmp_path / "S010", "S010", broker.url, sqlite_url)
    aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    pid, fd = pty.fork()
    if pid == 0:  # the agent, on a pseudo-terminal as an installer would run it by hand
        os.execv(sys.executable, [sys.executable, "-m", "tenpo", "edge", "run", "--config", str(config_path)])
    output = b""
    try:
        while b"bootstrap finished" not in output:
            ready, _, _ = select.select([fd], [], [], 30)
            assert ready, f"no output from the agent; so far: {output[-300:]!r}"
            try:
                output += os.read(fd, 65536)
            except OSError:
                break
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert "bootstrap" in text and "20000/20000" in text, text[-500:]
    assert "━" in text, "drawn as a bar"
    central.close()
