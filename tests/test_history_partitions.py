"""History that stays fast on PostgreSQL: events and ledgers partitioned by month (migration 9), old months
detached and archived by `tenpo cloud history detach`, exactly-once unharmed, and the status and monitor
queries reading the history through indexes and partition pruning, never a sequential scan."""

from __future__ import annotations

import calendar
import gzip
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import tenpo.cloud.db as central_db
from tenpo.cli import main
from tenpo.cloud.admin import add_store
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.db import Central
from tenpo.cloud.history import detach_before
from tenpo.cloud.hq.queries import store_detail
from tenpo.cloud.status import status_report
from tenpo.shared import crypto
from tenpo.shared.protocol import Event, EventBatch

HISTORY = ("events", "points_ledger", "stock_ledger")
DAY = 86400.0


def _register(db: Central, tmp_path: Path, *store_ids: str) -> None:
    for store_id in store_ids:
        crypto.generate_keypair(tmp_path / f"{store_id}.key", tmp_path / f"{store_id}.pub")
        add_store(db, store_id, (tmp_path / f"{store_id}.pub").read_text(), store_id)


def _events(first: int, count: int, member: str = "S001-M1") -> list[Event]:
    """Cycles of four from a seq 4n+1: a points entry, the sale behind it (HQ applies no points without one,
    docs/authority.md), two stock moves; so both ledgers and their triggers are exercised."""
    events = []
    for seq in range(first, first + count):
        if seq % 4 == 1:
            events.append(Event(seq, uuid.uuid4().hex, "points.entry", 1, seq << 16,
                                {"member_id": member, "delta": 10, "kind": "accrual", "ref": f"R{seq}"}))  # fmt: skip
        elif seq % 4 == 2:
            events.append(Event(seq, uuid.uuid4().hex, "sale.completed", 1, seq << 16, {
                "receipt_no": f"R{seq - 1}", "kind": "sale", "at": "2026-09-21T10:15:00+09:00", "member_id": member,
                "total": 1000, "rates": [{"rate": 10, "tax": 90}], "stock_movements": [], "points_entries": [],
                "points_earned": 10, "points_redeemed": 0}))  # fmt: skip
        else:
            events.append(Event(seq, uuid.uuid4().hex, "stock.adjusted", 1, seq << 16,
                                {"sku": f"SKU-{seq % 7}", "delta": 2, "reason": "count", "location": "floor"}))  # fmt: skip
    return events


def _totals(db: Central) -> tuple[int, int]:
    stock = int(db.scalar("SELECT coalesce(sum(on_hand), 0) FROM stock_levels", (), 0))
    points = int(db.scalar("SELECT coalesce(sum(balance), 0) FROM points_balances", (), 0))
    return stock, points


def _month_start(at: float, months_back: int) -> float:
    year, month = time.gmtime(at)[:2]
    month -= months_back
    while month < 1:
        year, month = year - 1, month + 12
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


def _move_to(db: Central, store_id: str, stream: str, low: int, high: int, at: float) -> None:
    """Make events low..high of a store (and their ledger rows) look as if applied at ``at``: the rows move
    to that month's partition (PostgreSQL moves a row whose partition key changes)."""
    db.ensure_history_months(at)
    with db.transaction():
        db.execute("UPDATE events SET applied_at = ? WHERE store_id = ? AND stream = ? AND seq BETWEEN ? AND ?",
                   (at, store_id, stream, low, high))  # fmt: skip
        for ledger in ("points_ledger", "stock_ledger"):
            db.execute(f"UPDATE {ledger} SET created_at = ? WHERE store_id = ? AND stream = ? AND store_seq BETWEEN ? AND ?",
                       (at, store_id, stream, low, high))  # fmt: skip


def test_migration_partitions_an_existing_database(postgres_url: str, tmp_path: Path, monkeypatch) -> None:
    # Every other area's tables are there: a batch now passes through store authority (10), the audit chain's
    # seal (11) and the areas that plan its events; only the partitioning (9) is new to this database.
    before = [m for m in central_db.MIGRATIONS if m[0] not in (9, 25, 29)]  # 25 replaces a function of 9, 29 adds a column
    monkeypatch.setattr(central_db, "MIGRATIONS", before)  # an HQ database as the release before this one made it
    old = Central(postgres_url)
    _register(old, tmp_path, "S001")
    apply_batch(old, "S001", EventBatch("stream-1", _events(1, 40)))
    totals, last_id = _totals(old), old.scalar("SELECT max(id) FROM stock_ledger")
    assert old.scalar("SELECT count(*) FROM pg_partitioned_table") == 0
    old.close()
    monkeypatch.undo()

    db = Central(postgres_url)  # migration 9 runs
    partitioned = {r[0] for r in db.all("SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid")}
    assert partitioned == set(HISTORY)
    assert db.scalar("SELECT count(*) FROM events") == 40 and _totals(db) == totals, "rows and balances carried over"
    this_month = time.strftime("%Y%m", time.gmtime())
    assert db.scalar(f"SELECT count(*) FROM events_p{this_month}") == 40, "the rows sit in their month, not the default"
    assert db.scalar("SELECT count(*) FROM events_default") == 0
    apply_batch(db, "S001", EventBatch("stream-1", _events(41, 20)))
    assert db.scalar("SELECT min(id) FROM stock_ledger WHERE store_seq > 40") > last_id, "ledger ids keep counting"
    assert _totals(db) == (totals[0] + 10 * 2, totals[1] + 10 * 5), "statement triggers keep balances and on-hand"
    db.close()


def test_ledger_updates_and_deletes_keep_balances(postgres_url: str, tmp_path: Path) -> None:
    db = Central(postgres_url)
    _register(db, tmp_path, "S001")
    apply_batch(db, "S001", EventBatch("stream-1", _events(1, 10)))
    with db.transaction():  # what a member merge does: move ledger rows to another member
        db.execute("UPDATE points_ledger SET member_id = 'HQ-GOLDEN' WHERE member_id = 'S001-M1' AND store_seq <= 4")
        db.execute("UPDATE stock_ledger SET store_seq = store_seq")  # no key or delta changes: no balance changes
        db.execute("DELETE FROM stock_ledger WHERE store_seq = 3")
    balances = dict(db.all("SELECT member_id, balance FROM points_balances"))
    assert balances == {"S001-M1": 20, "HQ-GOLDEN": 10}
    assert db.scalar("SELECT on_hand FROM stock_levels WHERE sku = 'SKU-3'") == 0
    assert db.scalar("SELECT sum(on_hand) FROM stock_levels") == 6
    db.close()


def test_detach_archives_old_months_and_events_still_apply_once(postgres_url: str, tmp_path: Path) -> None:
    db = Central(postgres_url)
    _register(db, tmp_path, "S001")
    old_stream = _events(1, 30)
    apply_batch(db, "S001", EventBatch("stream-old", old_stream))
    now = time.time()
    _move_to(db, "S001", "stream-old", 1, 30, _month_start(now, 3) + DAY)
    new_stream = _events(1, 20)
    apply_batch(db, "S001", EventBatch("stream-new", new_stream))  # the store's database was replaced
    _move_to(db, "S001", "stream-new", 1, 10, _month_start(now, 2) + DAY)
    totals = _totals(db)
    applied = db.scalar("SELECT events_applied FROM stores WHERE store_id = 'S001'")

    archive = tmp_path / "archive"
    done = detach_before(db, time.strftime("%Y-%m", time.gmtime(now)), archive)
    assert {d.table for d in done} == set(HISTORY) and sum(d.rows for d in done if d.table == "events") == 40
    assert db.scalar("SELECT count(*) FROM events") == 10, "only this month stays attached"
    with gzip.open(archive / f"events_p{time.strftime('%Y%m', time.gmtime(_month_start(now, 3) + DAY))}.csv.gz", "rt") as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("store_id,stream,seq") and len(lines) == 31, "a header and the month's 30 events"
    assert db.scalar("SELECT to_regclass(?)", (done[0].partition,)) is None, "archived months are dropped"
    assert _totals(db) == totals, "balances and on-hand keep what the archived rows did"

    # Exactly-once rests on last_applied_seq, not on the archived rows: a resend changes nothing.
    ack = apply_batch(db, "S001", EventBatch("stream-new", new_stream))
    assert db.scalar("SELECT count(*) FROM dead_letters") == 0
    assert (ack.hwm, ack.gap, ack.error) == (20, False, None)
    assert _totals(db) == totals and db.scalar("SELECT events_applied FROM stores WHERE store_id = 'S001'") == applied
    # A late replay of the old stream, whose rows are archived, is still refused: the store stays on its stream.
    ack = apply_batch(db, "S001", EventBatch("stream-old", old_stream[:10]))
    assert ack.error is not None and "ended" in ack.error
    assert db.scalar("SELECT stream FROM stores WHERE store_id = 'S001'") == "stream-new" and _totals(db) == totals
    apply_batch(db, "S001", EventBatch("stream-new", _events(21, 4)))
    assert _totals(db) == (totals[0] + 2 * 2, totals[1] + 2 * 5), "the stream goes on"
    db.close()


def test_detach_command(postgres_url: str, sqlite_url: str, tmp_path: Path, capsys) -> None:
    db = Central(postgres_url)
    _register(db, tmp_path, "S001")
    apply_batch(db, "S001", EventBatch("stream-1", _events(1, 6)))
    _move_to(db, "S001", "stream-1", 1, 6, _month_start(time.time(), 1) + DAY)
    db.close()
    assert main(["cloud", "history", "detach", "--before", "2026-13", "--db", postgres_url]) == 2
    assert "YYYY-MM" in capsys.readouterr().err
    assert main(["cloud", "history", "detach", "--before", "2999-01", "--db", postgres_url]) == 1
    assert "current month" in capsys.readouterr().err
    this_month = time.strftime("%Y-%m")
    assert main(["cloud", "history", "detach", "--before", this_month, "--db", postgres_url, "--json"]) == 0
    detached = json.loads(capsys.readouterr().out)
    assert {d["table"] for d in detached} == set(HISTORY) and all(d["archive"] is None for d in detached)
    db = Central(postgres_url)
    kept = detached[0]["partition"]
    assert db.scalar(f"SELECT count(*) FROM {kept}") > 0, "without --archive the month stays, as a table of its own"
    db.close()
    Central(sqlite_url).close()
    assert main(["cloud", "history", "detach", "--before", this_month, "--db", sqlite_url]) == 1
    err = capsys.readouterr().err
    assert "PostgreSQL only" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- query plans


class Recorder:
    """Wraps a Central's execute to keep each statement and its parameters."""

    def __init__(self, db: Central) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []
        self._execute = db.execute
        db.execute = self._record  # type: ignore[method-assign]

    def _record(self, text: str, params: Any = ()) -> Any:
        self.statements.append((text, tuple(params)))
        return self._execute(text, params)


def _scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(plan["Node Type"], plan.get("Relation Name", ""))]
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


def test_status_and_monitor_read_the_history_without_a_sequential_scan(postgres_url: str, tmp_path: Path) -> None:
    db = Central(postgres_url)
    stores = [f"S{i:03d}" for i in range(1, 21)]
    _register(db, tmp_path, *stores)
    now = time.time()
    months = [_month_start(now, back) for back in (3, 2, 1)] + [now - 3600]
    for at in months:
        db.ensure_history_months(at)
    rows = [(store, "stream-1", seq, uuid.uuid4().hex, "stock.adjusted", 1, seq, "{}", months[seq % 4] + seq % 1000, "")
            for store in stores for seq in range(1, 5001)]  # fmt: skip
    with db.transaction():
        db.executemany("INSERT INTO events(store_id, stream, seq, event_id, type, schema, hlc, payload, applied_at,"
                       " applied_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)  # fmt: skip
        db.execute("UPDATE stores SET stream = 'stream-1', last_applied_seq = 5000")
    db.execute("ANALYZE")
    assert db.scalar("SELECT count(*) FROM events_default") == 0, "every month has its partition"

    recorder = Recorder(db)
    report = status_report(db, now)
    assert report["totals"]["events_last_minute"] >= 0
    detail = store_detail(db, "S001")
    assert detail is not None and detail.event_types
    history = [(text, params) for text, params in recorder.statements if any(f" {t} " in f" {text} " for t in HISTORY)]
    assert len(history) >= 2, "the status report and the store detail both read the events"
    for text, params in history:
        (plan,) = db.scalar("EXPLAIN (FORMAT JSON) " + text, params)
        scans = _scans(plan["Plan"])
        read = [relation for _node, relation in scans if relation.split("_p")[0] in HISTORY or relation in HISTORY]
        assert read, f"no history table in the plan of {text}"
        seq_scans = [relation for node, relation in scans if node == "Seq Scan" and relation in read]
        # An empty partition (the default one, next month's made ahead) costs nothing to scan, and the planner
        # rightly scans it rather than read its index; a partition holding rows must be read through an index.
        costly = [r for r in seq_scans if db.scalar(f"SELECT count(*) FROM {r}") > 0]
        assert not costly, f"sequential scan of {costly} in:\n{text}"
        if "applied_at >=" in text:  # a time window reads its own month, not the whole history
            months_read = {r for r in read if "_p" in r}
            assert len(months_read) == 1, f"{text} read {months_read}"
    db.close()


@pytest.mark.parametrize("text", ["2026-3", "26-03", "2026-00"])
def test_month_must_be_yyyy_mm(text: str, sqlite_url: str, capsys) -> None:
    assert main(["cloud", "history", "detach", "--before", text, "--db", sqlite_url]) == 2
    assert "expected a month as YYYY-MM" in capsys.readouterr().err
