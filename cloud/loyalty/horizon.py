"""Which ledger entries are news for the next expiry run: the run's horizon.

Each run remembers how far into the ledger it looked; the next one reads only the members with entries past
that (and those with a lot ending). The highest ledger id at the start is not a safe horizon on PostgreSQL:
ids come from a sequence at INSERT, not at commit, so an entry still in its transaction when the run starts
(a store's batch, a web order) can commit with an id below one already committed, and then below the mark.
That member was never read again: a new lot never expired, a redemption never reached the stores' lots.

- PostgreSQL: every ledger row carries the transaction that inserted it (``points_ledger.xact``, migration
  29, filled by its default). A run records the snapshot it starts from; the next run reads the rows whose
  transaction that snapshot did not see as committed (still running then, or begun later). Exactly those:
  a transaction left open elsewhere on the server holds back the snapshot's xmin, which only widens the
  range of the ledger scanned (``xact`` at or above xmin, a BRIN index: rows sit in the order written),
  never the members read.
- SQLite has one writer: an uncommitted entry is the newest, above every committed id, and the id is a safe
  mark (no snapshot).
"""

from __future__ import annotations

from typing import NamedTuple

from tenpo.cloud.db import Central


class Horizon(NamedTuple):
    mark: int  # the highest ledger id committed when the run started
    xmin: int  # PostgreSQL: the oldest transaction still running then (0 on SQLite)
    snapshot: str | None  # PostgreSQL: the run's snapshot (pg_snapshot text: xmin:xmax:running,...)


def current_horizon(db: Central) -> Horizon:
    """The horizon of a run starting now: the mark and the snapshot of one statement."""
    if db.dialect != "postgresql":
        return Horizon(int(db.scalar("SELECT coalesce(max(id), 0) FROM points_ledger", (), 0)), 0, None)
    row = db.one("SELECT (SELECT coalesce(max(id), 0) FROM points_ledger), pg_snapshot_xmin(s)::text, s::text"
                 " FROM pg_current_snapshot() AS s")  # fmt: skip
    assert row is not None
    return Horizon(int(row[0]), int(row[1]), str(row[2]))


def last_horizon(db: Central) -> Horizon:
    """The horizon of the finished expiry run that started last (0, 0, None: none yet). Both numbers only grow
    with the start, so it is the last in their order even when two aggregators' runs overlapped."""
    row = db.one("SELECT ledger_mark, ledger_xmin, ledger_snapshot FROM loyalty_runs WHERE job = 'expire'"
                 " AND ledger_mark > 0 ORDER BY ledger_xmin DESC, ledger_mark DESC LIMIT 1")  # fmt: skip
    return Horizon(int(row[0]), int(row[1]), row[2]) if row else Horizon(0, 0, None)


def news_since(db: Central, last: Horizon) -> tuple[str, tuple[object, ...]]:
    """A condition on ``points_ledger`` for the rows the last run did not see, and its parameters."""
    if db.dialect == "postgresql" and last.snapshot:
        return ("xact >= ? AND NOT pg_visible_in_snapshot(xact::text::xid8, ?::pg_snapshot)",
                (last.xmin, last.snapshot))  # fmt: skip
    return "id > ?", (last.mark,)  # SQLite; PostgreSQL's first run after migration 29 (as before it)
