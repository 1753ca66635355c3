"""The agent's scheduled jobs, run with an injected clock, and HQ's retention."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, timedelta
from pathlib import Path

from apscheduler.triggers.interval import IntervalTrigger

from tenpo.cli import main
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.db import Central
from tenpo.cloud.scheduler import HqRetention, purge_hq
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.backup import store_backups
from tenpo.edge.config import load_config
from tenpo.edge.feed import _upsert_products
from tenpo.edge.outbox import acknowledge, pending, read_counter
from tenpo.edge.scheduler import Job, StoreJobs, StoreScheduler, last_run
from tenpo.sandbox import write_store_config
from tenpo.shared import pki
from tenpo.shared.protocol import EventBatch

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC
DAY = 86400.0


def _store(tmp_path: Path, extra: str = ""):
    path = write_store_config(tmp_path / "S001", "S001", "mqtt://127.0.0.1:1")
    if extra:
        path.write_text(path.read_text() + extra)
    config = load_config(str(path))
    db = edge_db.connect(config.database)
    with edge_db.transaction(db) as conn:
        _upsert_products(conn, "S001", [{"sku": "A1", "jan": None, "name": "tea", "price": 150, "tax_class": "reduced",
                                         "version": 1}], None)  # fmt: skip
    return config, db


def _scheduler(config, db, now: list[float]) -> StoreScheduler:
    clock = lambda: now[0]  # noqa: E731
    return StoreScheduler(db, StoreJobs(config, db, clock).schedule(UTC), UTC, clock)


def test_a_backup_missed_while_the_box_was_off_runs_once_at_start(tmp_path: Path) -> None:
    config, db = _store(tmp_path, f'[backup]\ndir = "{tmp_path / "nightly"}"\nhour = 3\n')
    now = [NOW]
    assert asyncio.run(_scheduler(config, db, now).catch_up()) == [], "a first start owes no run"
    assert store_backups(tmp_path / "nightly", "S001") == [], "the first nightly backup is not due yet"

    now[0] = NOW + 2 * DAY + 5 * 3600  # off for two nights (two 03:00 runs missed), back at 05:00
    overdue = asyncio.run(_scheduler(config, db, now).catch_up())
    assert "backup" in overdue and "retention" in overdue and "stock_snapshot" in overdue
    assert len(store_backups(tmp_path / "nightly", "S001")) == 1, "two missed runs coalesce into one"
    assert last_run(db.conn, "backup")["ok"] is True

    now[0] += 3600  # restarted an hour later: nothing missed since the catch-up
    assert "backup" not in asyncio.run(_scheduler(config, db, now).catch_up())
    assert len(store_backups(tmp_path / "nightly", "S001")) == 1


def test_jobs_run_on_the_event_loop_and_record_their_runs(tmp_path: Path) -> None:
    _config, db = _store(tmp_path)

    async def scenario() -> None:
        ran = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def tick() -> str:
            assert asyncio.get_running_loop() is loop, "a coroutine job runs on the agent's loop"
            ran.set()
            return "ticked"

        async def broken() -> None:
            raise RuntimeError("disk on fire")

        scheduler = StoreScheduler(db, [Job("tick", IntervalTrigger(seconds=1), tick),
                                        Job("broken", IntervalTrigger(seconds=1), broken)], UTC)  # fmt: skip
        await scheduler.start()
        await asyncio.wait_for(ran.wait(), 30)
        assert await scheduler.run_job("broken") is False, "a failing job is reported, not raised"
        scheduler.shutdown()

    asyncio.run(scenario())
    assert last_run(db.conn, "tick")["detail"] == "ticked"
    assert last_run(db.conn, "broken") == {**last_run(db.conn, "broken"), "ok": False, "detail": "RuntimeError: disk on fire"}


def test_retention_purges_old_visits_replays_dead_letters_and_decided_inspections_with_their_reports(tmp_path: Path) -> None:
    config, db = _store(tmp_path, "[retention]\nbeacon_visits_days = 30\ninspection_reports_days = 100\n")
    reports = config.database.parent / "inspections"
    reports.mkdir()
    conn = db.conn
    for visit_id, age in (("old", 31), ("new", 29)):
        conn.execute("INSERT INTO ble_visits(visit_id, member_id, arrived_at) VALUES (?, 'M1', ?)", (visit_id, NOW - age * DAY))
    conn.execute("INSERT INTO ble_inbox(replay, feed_at, shift_s, line, created_at) VALUES ('r', 0, 0, 'x', ?)", (NOW - 8 * DAY,))
    conn.execute("INSERT INTO dead_letters(source, reason, created_at) VALUES ('feed', 'bad', ?)", (NOW - 91 * DAY,))
    for inspection_id, status, age in (("I-old", "accepted", 101), ("I-pending", "pending", 200), ("I-new", "held", 99)):
        closed = NOW - age * DAY
        conn.execute("INSERT INTO inspections(inspection_id, status, opened_at, closed_at, reads, tags, verdict, created_at)"
                     " VALUES (?, ?, ?, ?, 1, 1, '{}', ?)", (inspection_id, status, closed, closed, NOW))  # fmt: skip
        for suffix in (".txt", ".json", ".epcis.jsonld"):
            (reports / f"{inspection_id}{suffix}").write_text("report")
    deleted = asyncio.run(StoreJobs(config, db, lambda: NOW).retention())
    assert deleted == {"beacon_rows": 1, "replay_lines": 1, "dead_letters": 1, "inspections": 1, "report_files": 3}
    assert [r[0] for r in conn.execute("SELECT visit_id FROM ble_visits")] == ["new"]
    assert sorted(r[0] for r in conn.execute("SELECT inspection_id FROM inspections")) == ["I-new", "I-pending"]
    assert sorted(p.name for p in reports.iterdir()) == sorted(f"{i}{s}" for i in ("I-new", "I-pending")
                                                               for s in (".txt", ".json", ".epcis.jsonld"))  # fmt: skip


def test_outbox_age_alarm_shows_in_edge_status_and_clears(tmp_path: Path, capsys) -> None:
    config, db = _store(tmp_path, "[alarms]\noutbox_age_minutes = 30\n")
    replica.adjust_stock(db, "A1", 1, "count")
    created = db.conn.execute("SELECT created_at FROM outbox").fetchone()[0]
    jobs = StoreJobs(config, db, lambda: created + 29 * 60)
    assert asyncio.run(jobs.outbox_age()) is None
    jobs.clock = lambda: created + 31 * 60
    assert asyncio.run(jobs.outbox_age())["pending"] == 1
    assert main(["edge", "status", "--config", str(config.path), "--json"]) == 0
    assert any(a.startswith("outbox: 1 event(s) unsent, the oldest for 31 min")
               for a in json.loads(capsys.readouterr().out)["alerts"])  # fmt: skip
    with edge_db.transaction(db) as conn:
        acknowledge(conn, read_counter(conn, "outbox"))
    assert asyncio.run(jobs.outbox_age()) is None
    assert main(["edge", "status", "--config", str(config.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["alerts"] == []


def test_certificate_expiry_is_warned_n_days_ahead(tmp_path: Path) -> None:
    pki.create_ca(tmp_path / "ca")
    soon = pki.issue(tmp_path / "ca", "S001", days=10)
    config, db = _store(tmp_path, "[alarms]\ncert_expiry_days = 30\n")
    jobs = StoreJobs(config, db, time.time)
    assert asyncio.run(jobs.cert_expiry()) is None, "no client certificate configured: nothing to warn about"
    jobs.config = load_config(str(_with_cert(config.path, soon)))
    alert = asyncio.run(jobs.cert_expiry())
    assert alert is not None and 9 < alert["days_left"] <= 10
    jobs.clock = lambda: time.time() - 30 * DAY  # a month earlier the same certificate was fine
    assert asyncio.run(jobs.cert_expiry()) is None


def _with_cert(path: Path, issued: pki.Issued) -> Path:
    text = path.read_text().replace("[broker]\n", f'[broker]\ncert = "{issued.cert}"\nkey = "{issued.key}"\n')
    path.write_text(text)
    return path


def test_daily_stock_snapshot_reaches_hq_and_a_drift_is_audited(tmp_path: Path, sqlite_url: str) -> None:
    config, db = _store(tmp_path)
    central = Central(sqlite_url)
    central.execute("INSERT INTO stores(store_id, public_key, name, registered_at) VALUES ('S001', 'k', 'S', 0)")
    replica.adjust_stock(db, "A1", 5, "count")
    jobs = StoreJobs(config, db, lambda: NOW)
    assert asyncio.run(jobs.stock_snapshot()) == {"parts": 1}
    replica.adjust_stock(db, "A1", 2, "count")  # after the snapshot, in the same batch
    events = pending(db.conn, 0, 100)
    assert [e.type for e in events] == ["stock.adjusted", "stock.snapshot", "stock.adjusted"]
    assert events[1].payload["levels"] == [{"sku": "A1", "location": "floor", "on_hand": 5}]
    assert apply_batch(central, "S001", EventBatch("s1", events)).hwm == 3
    drift = lambda: central.all("SELECT detail FROM audit_log WHERE action = 'stock.snapshot_drift'")  # noqa: E731
    assert drift() == [], "the store and HQ agree at the snapshot's point of the stream"

    db.conn.execute("INSERT INTO stock_ledger(sku, location, delta, reason, created_at) VALUES ('A1', 'floor', 4, 'x', 0)")
    asyncio.run(jobs.stock_snapshot())
    assert apply_batch(central, "S001", EventBatch("s1", pending(db.conn, 3, 100))).hwm == 4
    assert json.loads(drift()[0][0])["drift"] == {"A1": {"store": 11, "hq": 7}}
    assert central.all("SELECT reason FROM dead_letters") == []
    central.close()


def test_hq_retention_keeps_open_dead_letters_and_each_streams_newest_event(tmp_path: Path, sqlite_url: str) -> None:
    central = Central(sqlite_url)
    central.execute("INSERT INTO stores(store_id, public_key, name, registered_at) VALUES ('S001', 'k', 'S', 0)")
    old = NOW - 500 * DAY
    for seq in (1, 2, 3):
        central.execute("INSERT INTO events(store_id, stream, seq, event_id, type, schema, hlc, payload, applied_at)"
                        " VALUES ('S001', 's', ?, ?, 'stock.moved', 1, 0, '{}', ?)", (seq, f"e{seq}", old))  # fmt: skip
    for status, seq in (("open", 1), ("retried", None), ("open", None)):
        central.execute("INSERT INTO dead_letters(store_id, topic, reason, event_seq, status, received_at)"
                        " VALUES ('S001', 't', 'r', ?, ?, ?)", (seq, status, old))  # fmt: skip
    deleted = purge_hq(central, HqRetention(), NOW)
    assert deleted == {"dead_letters": 1, "events": 1}
    assert [r[0] for r in central.all("SELECT seq FROM events ORDER BY seq")] == [1, 3]
    assert purge_hq(central, HqRetention(), NOW) == {"dead_letters": 0, "events": 0}
    assert purge_hq(central, HqRetention(events_days=1000), NOW + timedelta(days=1).total_seconds())["events"] == 0
    central.close()
