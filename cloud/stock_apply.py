"""PostgreSQL: the stock levels of an applied batch in one statement (issue 19).

The ledger's statement trigger keeps ``stock_levels`` for every writer of ``stock_ledger`` (migration 9).
The apply knows its ledger rows already: it marks its own COPY so the trigger leaves the levels to it
(migration 25), then one upsert adds each level's delta, stamps its change-feed version and returns the new
on-hand. One new version of each level row per batch, where the trigger's upsert, the feed's read and the
feed's version update were three statements and two row versions. All inside the apply transaction: the
ledger rows, the levels and their feed entries commit together or not at all.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

from tenpo.cloud.db import Central
from tenpo.cloud.ledgers import INSERT_STOCK
from tenpo.cloud.plan import Plan
from tenpo.shared.changes import check_change

# Transaction-local (set_config's third argument): a rollback, or a savepoint's, takes the mark back with it.
MARK = "SELECT set_config('tenpo.stock_levels', ?, true)"
APPLY_MARK = "apply"  # the value the trigger function of migration 25 looks for
# One round trip: the feed's numbers for the levels (the counter's row lock is held to commit, as record_changes
# holds it), the mark taken back (ledger rows written later in this transaction, by a hook, keep the trigger),
# and each level's delta added and its version stamped, in key order as the trigger (two writers of the same
# levels cannot deadlock); a level's version is the number of its place in the keys as sent.
UPSERT_LEVELS = (
    "WITH c AS (UPDATE counters SET value = value + ? WHERE name = 'change'"
    " RETURNING value - ? AS before, set_config('tenpo.stock_levels', '', true))"
    " INSERT INTO stock_levels AS l (store_id, sku, on_hand, as_of, version)"
    " SELECT v.store_id, v.sku, v.delta, v.as_of, c.before + v.n"
    " FROM unnest(?::text[], ?::text[], ?::bigint[], ?::double precision[]) WITH ORDINALITY AS v(store_id, sku, delta,"
    " as_of, n), c ORDER BY 1, 2"
    " ON CONFLICT (store_id, sku) DO UPDATE SET on_hand = l.on_hand + EXCLUDED.on_hand, as_of = EXCLUDED.as_of,"
    " version = EXCLUDED.version RETURNING store_id, sku, on_hand, version"
)
INSERT_CHANGE = "INSERT INTO changes(seq, kind, key, store_id, data, created_at) VALUES (?, ?, ?, ?, ?, ?)"
_DATA_JSON = json.JSONEncoder(ensure_ascii=False).encode  # the text record_changes writes


_READY: weakref.WeakKeyDictionary[Central, bool] = weakref.WeakKeyDictionary()


def levels_by_apply(db: Central) -> bool:
    """Whether this database lets the apply write its stock levels: PostgreSQL past migration 25 (asked once)."""
    ready = _READY.get(db)
    if ready is None:
        ready = (
            db.dialect == "postgresql" and db.scalar("SELECT 1 FROM schema_migrations WHERE version = 25") is not None
        )
        _READY[db] = ready
    return ready


def write_stock_entries(db: Central, rows: list[tuple[Any, ...]], plan: Plan, now: float) -> None:
    """Insert the plan's stock ledger rows (``ledgers.INSERT_STOCK``), update their levels and record the levels'
    feed entries; the keys done here leave ``plan.stock_touched`` (publish_changes does the rest)."""
    db.execute(MARK, (APPLY_MARK,))
    db.executemany(INSERT_STOCK, rows)
    totals: dict[tuple[str, str], list[Any]] = {}  # (store_id, sku) -> [sum of deltas, newest created_at]
    for store_id, _stream, sku, _location, delta, _reason, _ref, _seq, at in rows:
        total = totals.get((store_id, sku))
        if total is None:
            totals[(store_id, sku)] = [delta, at]
        else:
            total[0] += delta
            total[1] = max(total[1], at)
    keys = sorted(totals)
    # Array literals written here: psycopg's array dumper costs a microsecond an element, a third of the apply's
    # time spent on the levels
    columns = [_text_array([k[0] for k in keys]), _text_array([k[1] for k in keys]),
               _number_array([totals[k][0] for k in keys]), _number_array([totals[k][1] for k in keys])]  # fmt: skip
    levels = sorted((int(version), store_id, sku, int(level))
                    for store_id, sku, level, version in db.all(UPSERT_LEVELS, [len(keys), len(keys), *columns]))  # fmt: skip
    changes = []
    for version, store_id, sku, level in levels:
        data = {"store_id": store_id, "sku": sku, "on_hand": level, "as_of": now, "version": version}
        check_change("stock.level", data)  # the store decodes it with the same Struct
        changes.append((version, "stock.level", f"{store_id}/{sku}", None, _DATA_JSON(data), now))
    db.executemany(INSERT_CHANGE, changes)
    plan.stock_touched.difference_update(keys)


def _text_array(values: list[str]) -> str:
    """A PostgreSQL array literal of the strings, each quoted (so commas, braces, spaces and NULL stay text)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _number_array(values: list[Any]) -> str:
    """Integers, or floats as repr writes them (the shortest text that reads back as the same double)."""
    return "{" + ",".join(map(repr, values)) + "}"
