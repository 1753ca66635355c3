"""The audit log's hash chain at HQ (issue 14): what chaining costs an append, and how fast verify walks it.

    python -m bench.bench_audit        (TENPO_BENCH_AUDIT_APPENDS, default 500; TENPO_BENCH_AUDIT_ROWS, default 100000)

- append: one audit row per transaction (an operator action, a clerk's view arriving alone), chained at
  commit under the chain-head lock, beside the same row inserted into an unchained table of the same shape
  in the same kind of transaction. Limit: a chained append costs at most twice an unchained one.
- verify: `tenpo cloud audit verify`'s walk over ROWS rows. Limit: at least 10,000 rows/s, so a year of a
  50-store chain (about 10 million views and actions) verifies in under 17 minutes, a nightly job.
SQLite always; PostgreSQL when TENPO_TEST_POSTGRES_URL (or the default local server) answers.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

from tenpo.cloud.audit.chain import verify_chain
from tenpo.cloud.changes import audit
from tenpo.cloud.db import Central

APPENDS = int(os.environ.get("TENPO_BENCH_AUDIT_APPENDS", "500"))
ROWS = int(os.environ.get("TENPO_BENCH_AUDIT_ROWS", "100000"))
APPEND_RATIO_LIMIT = 2.0
VERIFY_LIMIT_ROWS_S = 10_000
POSTGRES_URL = os.environ.get("TENPO_TEST_POSTGRES_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")


def measure(url: str, label: str) -> None:
    db = Central(url)
    db.execute("CREATE TABLE audit_plain (id INTEGER PRIMARY KEY, actor TEXT, action TEXT, subject TEXT, detail TEXT,"
               " at REAL)" if db.dialect == "sqlite" else "CREATE TABLE audit_plain (id BIGSERIAL PRIMARY KEY,"
               " actor TEXT, action TEXT, subject TEXT, detail TEXT, at DOUBLE PRECISION)")  # fmt: skip
    started = time.perf_counter()
    for n in range(APPENDS):
        with db.transaction():
            db.execute("INSERT INTO audit_plain(actor, action, subject, detail, at) VALUES (?, ?, ?, ?, ?)",
                       ("S001/1001", "member.view", f"S001-{n:06d}", "{}", time.time()))  # fmt: skip
    plain_ms = (time.perf_counter() - started) * 1000 / APPENDS
    started = time.perf_counter()
    for n in range(APPENDS):
        with db.transaction():
            audit(db, "S001/1001", "member.view", f"S001-{n:06d}", {})
    chained_ms = (time.perf_counter() - started) * 1000 / APPENDS
    ratio = chained_ms / plain_ms
    print(f"{label}: append {chained_ms:.2f} ms chained vs {plain_ms:.2f} ms unchained per transaction: x{ratio:.2f}"
          f" (limit x{APPEND_RATIO_LIMIT:g}) {'ok' if ratio <= APPEND_RATIO_LIMIT else 'OVER'}")  # fmt: skip
    with db.transaction():  # the rest in big transactions: one seal chains them all
        for n in range(ROWS - APPENDS):
            audit(db, "op:root", "member.view", f"G{n:07d}", {"n": n})
    started = time.perf_counter()
    verdict = verify_chain(db)
    rate = verdict.rows / (time.perf_counter() - started)
    print(f"{label}: verify {verdict.rows:,} rows at {rate:,.0f} rows/s (limit >= {VERIFY_LIMIT_ROWS_S:,} rows/s)"
          f" {'ok' if rate >= VERIFY_LIMIT_ROWS_S and verdict.ok else 'UNDER' if verdict.ok else 'BROKEN'}")  # fmt: skip
    db.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        measure(f"sqlite:///{Path(folder) / 'central.db'}", "SQLite")
    try:
        import psycopg  # the hq extra
    except ImportError:
        print("PostgreSQL: psycopg not installed (the hq extra); skipped")
        return
    name = f"tenpo_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        print(f"PostgreSQL: not reachable at {POSTGRES_URL.rpartition('@')[2]} ({type(exc).__name__}); skipped")
        return
    try:
        measure(f"{POSTGRES_URL.rpartition('/')[0]}/{name}", "PostgreSQL")
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
