"""The nightly points expiry job at chain scale (`python -m bench loyalty`), on SQLite.

Members each with three ledger entries (an accrual 14 months old, now past its last good day, partly spent;
an accrual of last month; a redemption), written straight into the central ledger. The figures: the expiry
job's first run, the worst night (an expiry entry, a balance and a member.loyalty change for every member),
and a second run with nothing new (incremental: no member is read again; idempotent: nothing written), each
next to the nightly window they must fit in.

`TENPO_BENCH_LOYALTY_MEMBERS` sets the size (default 100,000); the limit scales from 60 s for 1,000,000.
Ends with one JSON line.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from tenpo.cloud.db import Central
from tenpo.cloud.loyalty.store import run_expiry
from tenpo.shared.loyalty import JST

MEMBERS = int(os.environ.get("TENPO_BENCH_LOYALTY_MEMBERS", 100_000))
LIMIT_1M_S = 60.0  # the nightly window's share for 1,000,000 members
AS_OF = date(2026, 12, 1)


def seed(db: Central, members: int) -> None:
    old = datetime(2025, 10, 15, 12, tzinfo=JST).timestamp()  # good through 2026-10-31: expired by AS_OF
    recent = datetime(2026, 11, 10, 12, tzinfo=JST).timestamp()
    spent = datetime(2026, 9, 20, 12, tzinfo=JST).timestamp()  # before the old lot ends: it takes from that one
    sql = ("INSERT INTO points_ledger(member_id, delta, kind, ref, store_id, stream, store_seq, created_at)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?)")  # fmt: skip
    step = 50_000
    for start in range(0, members, step):
        rows = []
        for n in range(start, min(start + step, members)):
            m = f"M{n:07d}"
            rows += [(m, 300, "accrual", None, "S001", "s", 3 * n + 1, old),
                     (m, 200, "accrual", None, "S001", "s", 3 * n + 2, recent),
                     (m, -100, "redemption", None, "S001", "s", 3 * n + 3, spent)]  # fmt: skip
        with db.transaction():
            db.executemany(sql, rows)


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        db = Central(f"sqlite:///{Path(folder) / 'central.db'}")
        started = time.perf_counter()
        seed(db, MEMBERS)
        seeded = time.perf_counter() - started
        started = time.perf_counter()
        first = run_expiry(db, AS_OF)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        again = run_expiry(db, AS_OF + timedelta(days=0))
        again_s = time.perf_counter() - started
        db.close()
    limit = LIMIT_1M_S * MEMBERS / 1_000_000
    assert first.expired == 200 * MEMBERS, first  # 300 earned, 100 of it spent first: 200 expire
    assert again.expired == 0
    print(f"seeded {MEMBERS:,} members x 3 entries in {seeded:.1f} s")
    print(f"expiry job, worst night (every member's points end): {first_s:7.1f} s for {MEMBERS:,} members   limit {limit:.1f} s "
          f"(60 s per 1,000,000)  {'ok' if first_s <= limit else 'OVER'}")  # fmt: skip
    print(f"expiry job, a night with nothing new (incremental): {again_s:7.1f} s                     limit {limit:.1f} s  "
          f"{'ok' if again_s <= limit else 'OVER'}")  # fmt: skip
    print(json.dumps({"members": MEMBERS, "expiry_first_s": round(first_s, 2), "expiry_again_s": round(again_s, 2),
                      "limit_s": limit}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
