"""The nightly expiry job in chunks (tenpo.cloud.loyalty.store.run_expiry) against the lot rules it must follow
(tenpo.shared.loyalty.replay, the one definition): random ledgers of many members, campaign lots with their own
day, debts, several nights, on SQLite and PostgreSQL; and the same feed whatever the chunk size."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from tenpo.cloud.db import Central
from tenpo.cloud.loyalty import store as loyalty
from tenpo.shared.loyalty import EXPIRY_KIND, JST, expiring, replay

NIGHTS = (date(2026, 3, 1), date(2026, 9, 1), date(2026, 9, 1), date(2027, 2, 1))
INSERT = ("INSERT INTO points_ledger(member_id, delta, kind, ref, store_id, stream, store_seq, created_at)"
          " VALUES (?, ?, ?, ?, ?, ?, ?, ?)")  # fmt: skip
META = ("INSERT INTO loyalty_points_meta(store_id, stream, store_seq, member_id, kind, delta, ref, at, expires_on,"
        " checked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)")  # fmt: skip


def _ledger(seed: int, members: int, night: int) -> list[tuple[tuple[object, ...], tuple[object, ...] | None]]:
    """Entries that happened before ``NIGHTS[night]`` (some reach HQ only after later nights ran: offline
    sales), each a ledger row and, for a store's entry, its meta row (when it happened, a campaign's day)."""
    rnd = random.Random(seed * 100 + night)
    start = datetime(2025, 1, 1, 10, tzinfo=JST).timestamp()
    end = datetime.combine(NIGHTS[night], datetime.min.time(), JST).timestamp()
    rows = []
    for n in range(members):
        member = f"M{n:04d}"
        for _ in range(rnd.randint(0, 6)):
            at = rnd.uniform(start, end)
            delta = rnd.choice([rnd.randint(1, 500), -rnd.randint(1, 400)])
            kind = "accrual" if delta > 0 else "redemption"
            campaign = delta > 0 and rnd.random() < 0.2
            until = (datetime.fromtimestamp(at, JST).date() + timedelta(days=rnd.randint(0, 120))) if campaign else None
            seq = rnd.randrange(10**9)
            rows.append(((member, delta, kind, None, "S001", f"s{night}", seq, end),
                         ("S001", f"s{night}", seq, member, kind, delta, None, at, until and until.isoformat())))  # fmt: skip
    return rows


def _run(db: Central, seed: int, members: int) -> None:
    for night, as_of in enumerate(NIGHTS):
        with db.transaction():
            for row, meta in _ledger(seed, members, night):
                db.execute(INSERT, row)
                if meta:
                    db.execute(META, meta)
        loyalty.run_expiry(db, as_of, now=datetime.combine(as_of, datetime.min.time(), JST).timestamp() + 1800)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_chunked_job_writes_what_the_lot_rules_say_for_every_member(central_url: str, seed: int,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(loyalty, "EXPIRY_CHUNK", 7)  # many chunks, members split across them
    db = Central(central_url)
    try:
        _run(db, seed, 60)
        as_of = NIGHTS[-1]
        members = [str(m) for (m,) in db.all("SELECT DISTINCT member_id FROM points_ledger ORDER BY member_id")]
        assert len(members) > 50
        took = 0
        for member in members:
            entries = loyalty.member_entries(db, member)
            result = replay([e for e in entries if e.kind != EXPIRY_KIND], as_of=as_of)
            written = -sum(e.delta for e in entries if e.kind == EXPIRY_KIND)
            assert written == result.expired, member
            took += written
            balance = db.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (member,))
            assert balance == result.balance, member
            lots = [{"expires_on": d.isoformat(), "points": p} for d, p in expiring(result.lots)]
            held = db.one("SELECT lots, next_end FROM loyalty_members WHERE member_id = ?", (member,))
            assert (json.loads(held[0]), held[1]) == (lots, lots[0]["expires_on"] if lots else None) if held else not lots
            sent = db.all("SELECT data FROM changes WHERE kind = 'member.loyalty' AND key = ? ORDER BY seq", (member,))
            assert (json.loads(sent[-1][0])["lots"] if sent else []) == lots, member
            if db.one("SELECT 1 FROM points_ledger WHERE member_id = ? AND ref = ?", (member, f"expiry:{as_of}")):
                balances = db.all("SELECT data FROM changes WHERE kind = 'points.balance' AND key = ? ORDER BY seq",
                                  (member,))  # fmt: skip
                assert json.loads(balances[-1][0])["balance"] == result.balance, "the last night's change says so"
        assert took > 0
        runs = db.all("SELECT as_of, points FROM loyalty_runs WHERE job = 'expire' ORDER BY id")
        assert [r[0] for r in runs] == [n.isoformat() for n in NIGHTS] and sum(r[1] for r in runs) == took
    finally:
        db.close()


def test_the_chunk_size_changes_nothing_the_job_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = {}
    for size in (3, 10_000):
        monkeypatch.setattr(loyalty, "EXPIRY_CHUNK", size)
        path = tmp_path / f"central-{size}.db"
        db = Central(f"sqlite:///{path}")
        _run(db, 3, 40)
        db.close()
        with sqlite3.connect(path) as conn:
            tables[size] = [conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                            for t in ("changes", "points_ledger", "points_balances", "loyalty_members",
                                      "loyalty_rank_log", "loyalty_runs")]  # fmt: skip
    assert tables[3][0], "the job sent changes"
    assert tables[3] == tables[10_000]
