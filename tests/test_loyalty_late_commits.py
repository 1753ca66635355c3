"""The incremental expiry job and a ledger entry that commits late, SQLite and PostgreSQL, without sleeps.

A store's batch (or a web order) inserts a points entry and is still in its transaction when the nightly
expiry job starts; meanwhile another writer commits an entry with a higher id (PostgreSQL hands ids out at
INSERT, not at commit). The late entry must still count for the next run: its lot expires on its day, a
redemption's lots reach the stores, the balance stays the sum of the lots and each expiry is sent once.
On SQLite the other writer can only commit before (one writer), and the job waits for the late entry's
commit at its first write: the same steps, the interleaving SQLite allows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date, datetime

import pytest

from tenpo.cloud.db import Central
from tenpo.cloud.loyalty import store as loyalty
from tenpo.shared.loyalty import EXPIRY_KIND, JST, replay
from tests.test_loyalty_merge_races import WAIT_S, waiting_or_done

INSERT = ("INSERT INTO points_ledger(member_id, delta, kind, ref, store_id, stream, store_seq, created_at)"
          " VALUES (?, ?, ?, ?, 'S001', 'hand', ?, ?)")  # fmt: skip
META = ("INSERT INTO loyalty_points_meta(store_id, stream, store_seq, member_id, kind, delta, ref, at, checked)"
        " VALUES ('S001', 'hand', ?, ?, ?, ?, ?, ?, 1)")  # fmt: skip
LATE, OTHER, EARLY = "M-LATE", "M-OTHER", "M-EARLY"


@pytest.fixture
def central(central_url: str) -> Iterator[Central]:
    db = Central(central_url)
    yield db
    db.close()


class Writer:
    """A store's entries as the apply writes them (the ledger row and when it happened), numbered as it goes."""

    def __init__(self) -> None:
        self.seq = 0

    def entry(self, db: Central, member_id: str, delta: int, day: date) -> None:
        self.seq += 1
        at = datetime(day.year, day.month, day.day, 15, tzinfo=JST).timestamp()
        kind = "accrual" if delta > 0 else "redemption"
        db.execute(INSERT, (member_id, delta, kind, f"R{self.seq}", self.seq, at))
        db.execute(META, (self.seq, member_id, kind, delta, f"R{self.seq}", at))

    def committed(self, db: Central, member_id: str, delta: int, day: date) -> None:
        with db.transaction():
            self.entry(db, member_id, delta, day)


def feed(db: Central, kind: str, member_id: str) -> list[dict[str, object]]:
    rows = db.all("SELECT data FROM changes WHERE kind = ? AND key = ? ORDER BY seq", (kind, member_id))
    return [json.loads(data) for (data,) in rows]


def late_entry_around_a_run(central: Central, central_url: str, writer: Writer, member_id: str, delta: int,
                            day: date, as_of: date) -> None:  # fmt: skip
    """``member_id``'s entry inserted and held uncommitted while an incremental run as of ``as_of`` starts
    (another member's entry committed after it on PostgreSQL, before it on SQLite); committed after."""
    late, job_db = Central(central_url, create=False), Central(central_url, create=False)
    if central.dialect == "sqlite":
        writer.committed(central, OTHER, 10, date(2026, 1, 5))
    with ExitStack() as held:
        held.enter_context(late.transaction())
        writer.entry(late, member_id, delta, day)
        if central.dialect == "postgresql":
            writer.committed(central, OTHER, 10, date(2026, 1, 5))  # a higher id, committed first
        job, failed = waiting_or_done(central, job_db, lambda db: loyalty.run_expiry(db, as_of))
    late.close()  # the entry committed (SQLite: the job waited for it at its first write)
    job.join(WAIT_S)
    assert not job.is_alive() and not failed, failed


def assert_member_sees(db: Central, member_id: str, as_of: date, balance: int) -> None:
    """The balance, nothing left due, the lots adding up to it, and the stores holding those lots."""
    entries = loyalty.member_entries(db, member_id)
    result = replay(entries, as_of=as_of)
    held = int(db.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (member_id,), 0))
    assert held == balance == sum(e.delta for e in entries)
    assert result.written == result.expired, f"{member_id}: points due to expire were left (or taken twice)"
    assert sum(lot.points for lot in result.lots) - result.debt == balance
    sent = feed(db, "member.loyalty", member_id)
    assert sent, f"the stores never heard of {member_id}'s lots"
    assert sent[-1]["lots"] == [{"expires_on": lot.expires_on.isoformat(), "points": lot.points}
                                for lot in result.lots]  # fmt: skip
    balances = feed(db, "points.balance", member_id)  # HQ sends one when its expiry moved the balance
    assert not balances or balances[-1]["balance"] == balance


def expiry_entries(db: Central, member_id: str) -> list[int]:
    return [int(d) for (d,) in db.all("SELECT delta FROM points_ledger WHERE member_id = ? AND kind = ? ORDER BY id",
                                      (member_id, EXPIRY_KIND))]  # fmt: skip


def test_an_accrual_committed_after_the_run_started_still_expires_on_its_day(central: Central, central_url: str) -> None:
    writer = Writer()
    writer.committed(central, EARLY, 50, date(2025, 12, 1))  # good through 2026-12-31
    loyalty.run_expiry(central, date(2026, 1, 1))  # an earlier night: the next runs are incremental
    late_entry_around_a_run(central, central_url, writer, LATE, 120, date(2025, 1, 10), date(2026, 1, 15))
    # good through 2026-01-31: not due on the 15th, due on 1 February
    night = date(2026, 2, 1)
    report = loyalty.run_expiry(central, night)
    assert expiry_entries(central, LATE) == [-120], "the late accrual's lot never expired"
    assert report.expired == 120
    assert_member_sees(central, LATE, night, 0)
    assert [c["balance"] for c in feed(central, "points.balance", LATE)] == [0], "the expiry sent once"
    assert loyalty.run_expiry(central, night).expired == 0
    assert loyalty.run_expiry(central, date(2026, 2, 2)).members_seen == 0, "nothing new: nobody read again"
    assert [c["balance"] for c in feed(central, "points.balance", LATE)] == [0]
    assert expiry_entries(central, LATE) == [-120]


def test_a_redemption_committed_after_the_run_started_reaches_the_stores_lots(central: Central, central_url: str) -> None:
    writer = Writer()
    writer.committed(central, LATE, 100, date(2025, 1, 10))  # good through 2026-01-31
    writer.committed(central, LATE, 40, date(2025, 6, 10))  # good through 2026-06-30
    loyalty.run_expiry(central, date(2026, 1, 1))
    assert feed(central, "member.loyalty", LATE)[-1]["lots"][0] == {"expires_on": "2026-01-31", "points": 100}
    late_entry_around_a_run(central, central_url, writer, LATE, -100, date(2026, 1, 8), date(2026, 1, 10))
    loyalty.run_expiry(central, date(2026, 1, 11))
    # The redemption took the lot ending first: the stores must not offer those 100 points again offline.
    assert feed(central, "member.loyalty", LATE)[-1]["lots"] == [{"expires_on": "2026-06-30", "points": 40}]
    night = date(2026, 2, 1)
    loyalty.run_expiry(central, night)
    assert expiry_entries(central, LATE) == [], "nothing was left to expire on 1 February"
    assert_member_sees(central, LATE, night, 40)
