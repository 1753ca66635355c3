"""Migration 24 (PostgreSQL only): room on ``stock_levels`` pages for the apply's updates (issue 19).

Every applied batch updates each stock level it touches twice in one transaction: the ledger's statement
trigger adds the deltas to ``on_hand``, then the change feed stamps ``version``. On full pages (the default
fillfactor of 100) a new row version seldom fits beside the old one, so the update writes new index entries,
and each later upsert's key check walks all the dead versions of that key: 20,000 events over 200 SKUs left
14,000 dead rows and 1.4 million buffer reads (python -m bench apply's data). With pages filled to a quarter
the new versions stay on the row's page (heap-only tuples: no index entries) and later reads prune the dead
ones: 250,000 to 430,000 buffer reads (fewer when no other snapshot holds the pruning back).

Only pages written from now on keep the space; ``VACUUM FULL stock_levels`` rewrites the existing ones at once.
SQLite has no fillfactor (and updates rows in place): nothing to do there.
"""

from __future__ import annotations

# A row's old version plus the two new ones of a batch: three versions of every row a page holds, with room
# to spare (at 30, a page's three versions of each row did not always fit: tests/test_pg_stock_levels.py).
STOCK_LEVELS_FILLFACTOR = 25


def statements(dialect: str) -> list[str]:
    if dialect != "postgresql":
        return []
    return [f"ALTER TABLE stock_levels SET (fillfactor = {STOCK_LEVELS_FILLFACTOR})"]


# Migration 25: the insert trigger of migration 9 leaves the levels to the apply when the apply says it writes them
# itself (cloud/stock_apply.py, in the same statement), and takes the mark away as it does: the next writer of the
# ledger in the transaction (a hook, a correction) is counted by the trigger again.
STOCK_INSERT_TRIGGER = """CREATE OR REPLACE FUNCTION tenpo_stock_ledger_insert() RETURNS trigger AS $$ BEGIN
    IF current_setting('tenpo.stock_levels', true) = 'apply' THEN
        PERFORM set_config('tenpo.stock_levels', '', true);
        RETURN NULL;
    END IF;
    INSERT INTO stock_levels(store_id, sku, on_hand, as_of)
        SELECT store_id, sku, sum(delta), max(created_at) FROM new_rows GROUP BY store_id, sku ORDER BY store_id, sku
        ON CONFLICT (store_id, sku) DO UPDATE SET on_hand = stock_levels.on_hand + EXCLUDED.on_hand,
            as_of = EXCLUDED.as_of;
    RETURN NULL; END $$ LANGUAGE plpgsql"""


def apply_statements(dialect: str) -> list[str]:
    if dialect != "postgresql":
        return []
    return [STOCK_INSERT_TRIGGER]
