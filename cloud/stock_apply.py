"""PostgreSQL: the stock ledger rows of an applied batch, their levels and the levels' feed entries in one
statement (issue 19).

The ledger's statement trigger keeps ``stock_levels`` for every writer of ``stock_ledger`` (migration 9).
The apply knows its ledger rows already, so one statement inserts them, marks the insert so the trigger
leaves the levels to it (migration 25: the trigger takes the mark away as it stands aside, so the next
writer of the ledger in the transaction, a hook, counts again), adds each level's delta, stamps its
change-feed version, writes its feed entry and returns the new on-hand. One round trip and one new version
of each level row per batch, where two COPYs, the trigger's upsert, the feed's read and its version update
took seven round trips and two row versions; on a machine whose cores are busy each round trip waits for
the server to be scheduled. All inside the apply transaction: ledger rows, levels and feed entries commit
together or not at all.
"""

from __future__ import annotations

import weakref
from typing import Any

from tenpo.cloud.db import Central
from tenpo.cloud.plan import Plan
from tenpo.shared.changes import check_change

APPLY_MARK = "apply"  # the value of tenpo.stock_levels the trigger function of migration 25 looks for
# The mark is transaction-local (set_config's third argument): a rollback, or a savepoint's, takes it back too.
# The ledger rows come as arrays; the insert joins the mark's one row, so the mark is set before the statement
# ends and its trigger runs. The levels: the feed's numbers (the counter's row lock is held to commit, as
# record_changes holds it), then each level's delta and version in key order as the trigger (two writers of
# the same levels cannot deadlock); a level's version is the number of its place in the keys as sent.
WRITE_STOCK = (
    "WITH mark AS (SELECT set_config('tenpo.stock_levels', '" + APPLY_MARK + "', true)),"
    " ledger AS (INSERT INTO stock_ledger(store_id, stream, sku, location, delta, reason, ref, store_seq, created_at)"
    " SELECT r.* FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[],"
    " ?::bigint[], ?::double precision[]) AS r, mark),"
    " c AS (UPDATE counters SET value = value + ? WHERE name = 'change' RETURNING value - ? AS before),"
    " up AS (INSERT INTO stock_levels AS l (store_id, sku, on_hand, as_of, version)"
    " SELECT v.store_id, v.sku, v.delta, v.as_of, c.before + v.n"
    " FROM unnest(?::text[], ?::text[], ?::bigint[], ?::double precision[]) WITH ORDINALITY AS v(store_id, sku, delta,"
    " as_of, n), c ORDER BY 1, 2"
    " ON CONFLICT (store_id, sku) DO UPDATE SET on_hand = l.on_hand + EXCLUDED.on_hand, as_of = EXCLUDED.as_of,"
    " version = EXCLUDED.version RETURNING store_id, sku, on_hand, version),"
    # each level's feed entry, as publish_changes writes it (stores read the JSON, not its spacing)
    " feed AS (INSERT INTO changes(seq, kind, key, store_id, data, created_at)"
    " SELECT version, 'stock.level', store_id || '/' || sku, NULL, json_build_object('store_id', store_id, 'sku', sku,"
    " 'on_hand', on_hand, 'as_of', ?::double precision, 'version', version)::text, ?::double precision FROM up)"
    " SELECT store_id, sku, on_hand, version FROM up"
)

_READY: weakref.WeakKeyDictionary[Central, bool] = weakref.WeakKeyDictionary()


def levels_by_apply(db: Central) -> bool:
    """Whether the ledger's insert trigger here stands aside for the apply's mark, and takes it away as it does
    (PostgreSQL past migration 25); asked once per connection."""
    ready = _READY.get(db)
    if ready is None:
        source = None
        if db.dialect == "postgresql":
            source = db.scalar("SELECT prosrc FROM pg_proc WHERE proname = 'tenpo_stock_ledger_insert'")
        ready = source is not None and "PERFORM set_config('tenpo.stock_levels', '', true)" in source
        _READY[db] = ready
    return ready


def write_stock_entries(db: Central, rows: list[tuple[Any, ...]], plan: Plan, now: float) -> None:
    """Insert the plan's stock ledger rows (``ledgers.INSERT_STOCK``'s parameters), update their levels and record
    the levels' feed entries; the keys done here leave ``plan.stock_touched`` (publish_changes does the rest)."""
    totals: dict[tuple[str, str], list[Any]] = {}  # (store_id, sku) -> [sum of deltas, newest created_at]
    for store_id, _stream, sku, _location, delta, _reason, _ref, _seq, at in rows:
        total = totals.get((store_id, sku))
        if total is None:
            totals[(store_id, sku)] = [delta, at]
        else:
            total[0] += delta
            total[1] = max(total[1], at)
    keys = sorted(totals)
    # Array literals written here: psycopg's array dumper costs a microsecond an element
    ledger = [text_array(column) if n in (0, 1, 2, 3, 5, 6) else number_array(column)
              for n, column in enumerate(zip(*rows))]  # fmt: skip
    levels = [text_array([k[0] for k in keys]), text_array([k[1] for k in keys]),
              number_array([totals[k][0] for k in keys]), number_array([totals[k][1] for k in keys])]  # fmt: skip
    written = db.all(WRITE_STOCK, [*ledger, len(keys), len(keys), *levels, now, now])
    for store_id, sku, level, version in written:  # what the store will decode (a failure rolls the batch back)
        check_change("stock.level", {"store_id": store_id, "sku": sku, "on_hand": int(level), "as_of": now,
                                     "version": int(version)})  # fmt: skip
    plan.stock_touched.difference_update(keys)


def text_array(values: tuple[str | None, ...] | list[str]) -> str:
    """A PostgreSQL array literal of the strings, each quoted (so commas, braces, spaces and 'NULL' stay text);
    None is NULL. The column is joined, escaped and split in a few C-level string calls, not one per value:
    text in PostgreSQL holds no NUL, so NUL can stand between the values while they are escaped."""
    if values.count(None) == len(values):  # type: ignore[arg-type]  # a column of NULLs (ref, most often)
        return "{" + ",".join(["NULL"] * len(values)) + "}"
    joined = "\x00".join(values) if None not in values else None  # type: ignore[arg-type]
    if joined is None or joined.count("\x00") != len(values) - 1:  # NULLs, or a NUL PostgreSQL would refuse anyway
        return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                              for v in values) + "}"  # fmt: skip
    if "\\" in joined or '"' in joined:
        joined = joined.replace("\\", "\\\\").replace('"', '\\"')
    return '{"' + joined.replace("\x00", '","') + '"}'


def number_array(values: tuple[Any, ...] | list[Any]) -> str:
    """Integers, or floats as repr writes them (the shortest text that reads back as the same double)."""
    first = values[0] if values else None
    if first and values.count(first) == len(values):  # one value (a batch's time): written once, repeated
        return "{" + ",".join([repr(first)] * len(values)) + "}"  # (not 0: 0.0 and -0.0 count as equal)
    return "{" + ",".join(map(repr, values)) + "}"
