"""`tenpo cloud history detach --before YYYY-MM [--archive DIR]`: retention of the event and ledger history.

On PostgreSQL the history tables are partitioned by UTC month (cloud/history_schema.py). Detaching a month
is instant (no DELETE, no vacuum debt) and leaves what the rows already did in place: balances and on-hand
are kept by triggers that do not run on DETACH, and exactly-once keeps working because it rests on each
store's ``last_applied_seq``. Before an events month goes, the newest seq of every (store, stream) in it is
kept in ``archived_streams``, so a late replay of a stream whose rows are archived is still refused.

With ``--archive DIR`` each detached month is written as ``DIR/<partition>.csv.gz`` (COPY, CSV with a header
line; ``COPY <table> FROM PROGRAM 'zcat file' (FORMAT csv, HEADER)`` brings it back) and then dropped;
without it the month stays in the database as a table of its own, out of every query's way.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tenpo.cloud.cli_support import db_flag, print_json
from tenpo.cloud.db import Central
from tenpo.cloud.history_schema import HISTORY_TABLES
from tenpo.shared.errors import UserError

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True)
class Detached:
    table: str
    partition: str
    month: str  # YYYY-MM
    rows: int
    archive: str | None  # the file written, or None when the month stays as a table


def parse_month(text: str) -> str:
    """'2026-03' → '202603'; UserError (exit 2 at the CLI) otherwise."""
    match = MONTH.match(text)
    if match is None:
        raise UserError(f"--before {text!r}: expected a month as YYYY-MM, e.g. 2026-03")
    return match.group(1) + match.group(2)


def month_partitions(db: Central, table: str) -> list[str]:
    """The attached month partitions of ``table`` (``<table>_pYYYYMM``), oldest first."""
    rows = db.all(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = to_regclass(?) ORDER BY c.relname",
        (table,),
    )
    pattern = re.compile(rf"^{table}_p\d{{6}}$")
    return [name for (name,) in rows if pattern.match(name)]


def detach_before(db: Central, before: str, archive: Path | None = None, now: float | None = None) -> list[Detached]:
    """Detach (and with ``archive``, write out and drop) every history month before ``before`` (YYYY-MM)."""
    if db.dialect != "postgresql":
        raise UserError("the history is partitioned by month on PostgreSQL only: on SQLite there is nothing to detach")
    cutoff = parse_month(before)
    this_month = time.strftime("%Y%m", time.gmtime(time.time() if now is None else now))
    if cutoff > this_month:
        raise UserError(f"--before {before}: that would detach the current month, where events are still applied")
    if archive is not None:
        archive.mkdir(parents=True, exist_ok=True)
    done: list[Detached] = []
    for table, _column in HISTORY_TABLES:
        for partition in month_partitions(db, table):
            if partition[-6:] >= cutoff:
                continue
            done.append(_detach_one(db, table, partition, archive))
    return done


def _detach_one(db: Central, table: str, partition: str, archive: Path | None) -> Detached:
    """One month in one transaction. The month is locked against writes (SHARE) while it is counted and
    written out; the parent table is locked (DETACH takes ACCESS EXCLUSIVE) only at the end, for as long
    as the detach and the drop take, so aggregators applying this month's events wait milliseconds, not
    for the archive file. The file is complete on disk before the rows are dropped."""
    with db.transaction():
        db.execute(f'LOCK TABLE "{partition}" IN SHARE MODE')
        rows = int(db.scalar(f'SELECT count(*) FROM "{partition}"', (), 0))
        if table == "events":
            db.execute(
                "INSERT INTO archived_streams(store_id, stream, last_seq, archived_at)"
                f' SELECT store_id, stream, max(seq), ? FROM "{partition}" GROUP BY store_id, stream'
                " ON CONFLICT (store_id, stream) DO UPDATE SET"
                " last_seq = greatest(archived_streams.last_seq, excluded.last_seq), archived_at = excluded.archived_at",
                (time.time(),),
            )
        written = None
        if archive is not None:
            path = archive / f"{partition}.csv.gz"
            partial = path.with_suffix(".gz.partial")
            with gzip.open(partial, "wb") as out, db.conn.cursor() as cur:
                with cur.copy(f'COPY "{partition}" TO STDOUT (FORMAT csv, HEADER)') as copy:
                    for chunk in copy:
                        out.write(chunk)
            with open(partial, "rb") as written_file:
                os.fsync(written_file.fileno())
            partial.replace(path)
            written = str(path)
        db.execute(f'ALTER TABLE {table} DETACH PARTITION "{partition}"')
        if written is not None:
            db.execute(f'DROP TABLE "{partition}"')
    month = f"{partition[-6:-2]}-{partition[-2:]}"
    return Detached(table, partition, month, rows, written)


# ---------------------------------------------------------------------------- CLI


def register_cloud(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = commands.add_parser("history", help="retention of the event and ledger history (PostgreSQL)")
    history_commands = history.add_subparsers(dest="history_command", metavar="COMMAND")
    history_commands.required = True
    detach = db_flag(history_commands.add_parser(
        "detach", help="detach the history months before a month; with --archive, write them out and drop them"))  # fmt: skip
    detach.add_argument("--before", required=True, metavar="YYYY-MM", help="detach every month before this one")
    detach.add_argument("--archive", type=Path, metavar="DIR", help="write each month to DIR/<partition>.csv.gz, then drop it")
    detach.add_argument("--json", action="store_true", help="print what was detached as JSON")
    detach.set_defaults(func=cmd_detach)


def cmd_detach(args: argparse.Namespace) -> int:
    try:
        parse_month(args.before)
    except UserError as exc:
        print(f"tenpo cloud history detach: {exc}", file=sys.stderr)
        return 2
    done = detach_before(Central(args.db, create=False), args.before, args.archive)
    if args.json:
        print_json([asdict(item) for item in done])
        return 0
    if not done:
        print(f"no history months before {args.before}")
    for item in done:
        where = f"archived to {item.archive}" if item.archive else f"kept as table {item.partition}"
        print(f"{item.table} {item.month}: {item.rows:,} rows detached, {where}")
    return 0
