"""The nightly loyalty jobs racing a member merge at HQ, SQLite and PostgreSQL, each interleaving forced (no
sleeps): the merge asked for while a chunk of the job sits between its read and its write, or committed
between two chunks, or between the rank job's read of the spend and its write. Whatever the order, every
member's points balance (no ledger row left under a merged-away id, nothing left due to expire, the lots
adding up to the balance) and the feed carries each change once."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tenpo.cloud.db import Central
from tenpo.cloud.loyalty import store as loyalty
from tenpo.cloud.loyalty.locking import in_retried_transaction
from tenpo.shared.loyalty import EXPIRY_KIND, JST, LoyaltyConfig, replay
from tests.support.stores import central_with_s001
from tests.test_loyalty_merge_followups import Store, feed, merge

WAIT_S = 30.0  # a bound on each wait for the other side, never a pause
NIGHT = date(2026, 2, 1)
PEOPLE = {"S001-A": ("山田 花子", "090-1111-2222"), "S001-B": ("佐藤 太郎", "080-3333-4444")}


@pytest.fixture
def central(central_url: str, tmp_path: Path) -> Iterator[Central]:
    yield from central_with_s001(central_url, tmp_path)


def register(store: Store) -> None:
    for member_id, (name, phone) in PEOPLE.items():
        store.send("member.registered", {"member_id": member_id, "name": name, "phone": phone})


def assert_points_balance(db: Central, as_of: date, gone: str) -> None:
    """Nothing under the merged-away id; for every member, nothing left due as of ``as_of``, the balance the
    ledger's sum, and what the lots hold (less any debt) the balance."""
    assert db.all("SELECT id FROM points_ledger WHERE member_id = ?", (gone,)) == [], "points left under a merged-away id"
    assert int(db.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (gone,), 0)) == 0
    for member_id, balance in db.all("SELECT member_id, balance FROM points_balances WHERE member_id <> ?", (gone,)):
        entries = loyalty.member_entries(db, member_id)
        result = replay(entries, as_of=as_of)
        assert result.written == result.expired, f"{member_id}: points due to expire were left (or taken twice)"
        assert int(balance) == sum(e.delta for e in entries)
        assert sum(lot.points for lot in result.lots) - result.debt == int(balance)


def assert_feed_follows(db: Central, winner: str, loser: str) -> None:
    """The stores hear nothing more of the loser after the merge, and the winner's last balance is the true one."""
    merged_at = feed(db, "member.merge", winner)[-1][0]
    for kind in ("points.balance", "member.loyalty"):
        assert [seq for seq, _ in feed(db, kind, loser) if seq > merged_at] == [], f"{kind} of {loser} after its merge"
    balance = int(db.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (winner,), 0))
    assert feed(db, "points.balance", winner)[-1][1]["balance"] == balance


def pause_first_call(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> tuple[threading.Event, threading.Event]:
    """The first call of ``owner.name`` (by the job: it comes after the job's read) waits for ``release``."""
    reached, release = threading.Event(), threading.Event()
    original = getattr(owner, name)
    first = [True]
    guard = threading.Lock()

    def paused(*args: Any, **kwargs: Any) -> Any:
        with guard:
            pausing, first[0] = first[0], False
        if pausing:
            reached.set()
            assert release.wait(WAIT_S)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, paused)
    return reached, release


class ReportsLockWait:
    """A SQLite connection whose BEGIN IMMEDIATE says when it has to wait for another writer (then waits)."""

    def __init__(self, conn: sqlite3.Connection, waiting: threading.Event) -> None:
        self._conn, self._waiting = conn, waiting
        conn.execute("PRAGMA busy_timeout = 0")

    def execute(self, sql: str, params: Any = ()) -> Any:
        if sql != "BEGIN IMMEDIATE":
            return self._conn.execute(sql, params)
        try:
            return self._conn.execute(sql)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
        self._waiting.set()
        self._conn.execute(f"PRAGMA busy_timeout = {int(WAIT_S * 1000)}")
        return self._conn.execute(sql)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, threading.Event, list[BaseException]]:
    done, failed = threading.Event(), []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the test
            failed.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done, failed


def waiting_or_done(db: Central, other: Central, work: Callable[[Central], Any]) -> tuple[threading.Thread, list[BaseException]]:
    """Start ``work`` on its own connection ``other``; return once it has committed or waits for a lock."""
    waiting = threading.Event()
    if other.dialect == "sqlite":
        other.conn = ReportsLockWait(other.conn, waiting)
    pid = None if other.dialect == "sqlite" else int(other.conn.info.backend_pid)

    def run() -> None:
        try:
            work(other)
        finally:
            other.conn.close()

    thread, done, failed = in_thread(run)
    deadline = time.monotonic() + WAIT_S
    while not (done.is_set() or waiting.is_set()):
        if pid is not None and db.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ? AND"
                                         " wait_event_type = 'Lock'", (pid,)):  # fmt: skip
            break
        assert time.monotonic() < deadline, "it neither committed nor waited"
        done.wait(0.01)
    return thread, failed


def merge_while_paused(central: Central, central_url: str, monkeypatch: pytest.MonkeyPatch, pause_at: str,
                       job: Callable[[Central], Any], winner: str, loser: str) -> None:
    """Run ``job`` on its own connection, pause it at its first ``loyalty.<pause_at>`` call, ask for the merge of
    ``loser`` into ``winner`` on another, then let the job go on; both must finish without an error."""
    reached, release = pause_first_call(monkeypatch, loyalty, pause_at)
    job_db, merging_db = Central(central_url, create=False), Central(central_url, create=False)
    worker, _done, job_failed = in_thread(lambda: job(job_db))
    assert reached.wait(WAIT_S)
    merging, merge_failed = waiting_or_done(central, merging_db, lambda db: merge(db, winner, loser))
    release.set()
    worker.join(WAIT_S)
    merging.join(WAIT_S)
    job_db.close()
    assert not job_failed and not merge_failed, (job_failed, merge_failed)


@pytest.mark.parametrize("winner, loser", [("S001-A", "S001-B"), ("S001-B", "S001-A")])
def test_a_merge_asked_for_while_an_expiry_chunk_is_between_read_and_write(
        central: Central, central_url: str, monkeypatch: pytest.MonkeyPatch, winner: str, loser: str) -> None:  # fmt: skip
    store = Store(central)
    register(store)
    store.entry("S001-A", 100, date(2025, 1, 10))  # good through 2026-01-31
    store.entry("S001-B", 50, date(2025, 1, 12))  # the same
    store.entry("S001-B", 30, date(2025, 12, 1))  # good through 2026-12-31
    reports: list[loyalty.ExpiryReport] = []
    # paused once the chunk has read both ledgers
    merge_while_paused(central, central_url, monkeypatch, "replay",
                       lambda db: reports.append(loyalty.run_expiry(db, NIGHT)), winner, loser)  # fmt: skip
    assert reports[0].expired == 150
    assert_points_balance(central, NIGHT, loser)
    assert int(central.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (winner,))) == 30
    assert_feed_follows(central, winner, loser)
    assert loyalty.run_expiry(central, NIGHT).expired == 0, "the next run finds nothing left to do"


def test_a_second_aggregator_running_the_expiry_job_meanwhile_expires_nothing_twice(
        central: Central, central_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    store = Store(central)
    register(store)
    store.entry("S001-A", 100, date(2025, 1, 10))
    store.entry("S001-B", 50, date(2025, 1, 12))
    before = int(central.scalar("SELECT max(seq) FROM changes"))
    reached, release = pause_first_call(monkeypatch, loyalty, "replay")  # the first job's chunk has read
    first_db, second_db = Central(central_url, create=False), Central(central_url, create=False)
    reports: list[loyalty.ExpiryReport] = []
    first, _done, first_failed = in_thread(lambda: reports.append(loyalty.run_expiry(first_db, NIGHT)))
    assert reached.wait(WAIT_S)
    second, second_failed = waiting_or_done(central, second_db, lambda db: reports.append(loyalty.run_expiry(db, NIGHT)))
    release.set()
    first.join(WAIT_S)
    second.join(WAIT_S)
    first_db.close()
    assert not first_failed and not second_failed, (first_failed, second_failed)
    assert sorted(r.expired for r in reports) == [0, 150]
    expiries = central.all("SELECT member_id, delta FROM points_ledger WHERE kind = ? ORDER BY member_id", (EXPIRY_KIND,))
    assert expiries == [("S001-A", -100), ("S001-B", -50)], "each member's points expired once"
    for member_id in PEOPLE:
        sent = [data["balance"] for seq, data in feed(central, "points.balance", member_id) if seq > before]
        assert sent == [0], "the stores hear each member's new balance once"


def test_a_merge_between_two_chunks_of_the_expiry_job(central: Central, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(central)
    register(store)
    store.entry("S001-A", 100, date(2025, 1, 10))
    store.entry("S001-B", 50, date(2025, 1, 12))
    monkeypatch.setattr(loyalty, "EXPIRY_CHUNK", 1)
    chunked = loyalty.chunks

    def merging_after_the_first(items: list[str], size: int) -> Iterator[list[str]]:
        for n, chunk in enumerate(chunked(items, size)):
            if n == 1:  # A's chunk committed; B merges into A before B's chunk is read
                merge(central, "S001-A", "S001-B")
            yield chunk

    monkeypatch.setattr(loyalty, "chunks", merging_after_the_first)
    assert loyalty.run_expiry(central, NIGHT).expired == 100  # A's; B's 50 are the merge's correction
    assert_points_balance(central, NIGHT, "S001-B")
    assert int(central.scalar("SELECT balance FROM points_balances WHERE member_id = 'S001-A'")) == 0
    assert_feed_follows(central, "S001-A", "S001-B")
    expiries = central.all("SELECT delta, ref FROM points_ledger WHERE kind = ? ORDER BY id", (EXPIRY_KIND,))
    assert expiries == [(-100, "expiry:2026-02-01"), (-50, "expiry:2026-02-01")], "each point expired once"


def spend_30000_each(store: Store) -> date:
    """30,000 yen each ten days ago: レギュラー apart, シルバー together; returns today (JST)."""
    today = loyalty.today_jst()
    day = today - timedelta(days=10)
    for n, member_id in enumerate(PEOPLE, start=1):
        store.send("sale.completed", {
            "receipt_no": f"R-{n}", "kind": "sale", "refund_of": None, "member_id": member_id, "total": 30_000,
            "at": datetime(day.year, day.month, day.day, 15, tzinfo=JST).isoformat(),
            "rates": [{"rate": 10, "tax": 2727}], "stock_movements": [], "points_entries": [],
            "points_earned": 0, "points_redeemed": 0, "feed_cursor": None})  # fmt: skip
    return today


def assert_one_silver_member(db: Central, winner: str, loser: str) -> None:
    assert db.one("SELECT rank, spend FROM loyalty_members WHERE member_id = ?", (winner,)) == ("シルバー", 60_000)
    assert db.all("SELECT member_id FROM loyalty_members WHERE member_id = ?", (loser,)) == []
    assert db.all("SELECT id FROM loyalty_rank_log WHERE member_id = ?", (loser,)) == []
    merged_at = feed(db, "member.merge", winner)[-1][0]
    assert [data["rank"] for seq, data in feed(db, "member.loyalty", winner) if seq > merged_at] == ["シルバー"]
    assert [seq for seq, _ in feed(db, "member.loyalty", loser) if seq > merged_at] == []


@pytest.mark.parametrize("winner, loser", [("S001-A", "S001-B"), ("S001-B", "S001-A")])
def test_a_merge_asked_for_while_a_rank_chunk_is_being_written(
        central: Central, central_url: str, monkeypatch: pytest.MonkeyPatch, winner: str, loser: str) -> None:  # fmt: skip
    store = Store(central)
    register(store)
    today = spend_30000_each(store)
    # paused once the chunk has written one rank
    merge_while_paused(central, central_url, monkeypatch, "member_entries",
                       lambda db: loyalty.run_ranks(db, today), winner, loser)  # fmt: skip
    assert_one_silver_member(central, winner, loser)


def test_a_rank_computed_before_a_merge_is_not_written_after_it(central: Central,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    store = Store(central)
    register(store)
    today = spend_30000_each(store)
    ranked = LoyaltyConfig.rank_for
    merged: list[bool] = []

    def rank_for(self: LoyaltyConfig, spend: int) -> Any:  # the job has read everyone's spend: the merge commits
        if not merged:
            merged.append(True)
            merge(central, "S001-A", "S001-B")
        return ranked(self, spend)

    monkeypatch.setattr(LoyaltyConfig, "rank_for", rank_for)
    loyalty.run_ranks(central, today)
    assert merged
    assert_one_silver_member(central, "S001-A", "S001-B")
    monkeypatch.undo()
    assert [r.rank for r in loyalty.run_ranks(central, today, dry_run=True)] == ["シルバー"]


def test_a_chunk_that_postgresql_failed_to_break_a_deadlock_runs_again_from_its_read(central: Central) -> None:
    """The other side of a deadlock (a store's batch writing its members' balances in event order) may be
    the one PostgreSQL lets through: the chunk's transaction wrote nothing, so it is simply run again."""
    attempts: list[int] = []

    def work() -> int:
        attempts.append(len(attempts) + 1)
        central.execute("INSERT INTO loyalty_settings(name, value, updated_at) VALUES ('probe', ?, 0)"
                        " ON CONFLICT(name) DO UPDATE SET value = loyalty_settings.value || excluded.value",
                        (str(len(attempts)),))  # fmt: skip
        if len(attempts) == 1:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return len(attempts)

    assert in_retried_transaction(central, work) == 2
    assert central.scalar("SELECT value FROM loyalty_settings WHERE name = 'probe'") == "2", "the first try left nothing"

    def fails() -> None:
        raise ValueError("not a lock conflict")

    with pytest.raises(ValueError):
        in_retried_transaction(central, fails)
