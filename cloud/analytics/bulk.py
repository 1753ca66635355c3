"""The full rebuild on PostgreSQL in set-based SQL: the same rows the Python pass (tenpo.cloud.analytics
.refresh) writes, without sending millions of sales through the client and back.

Store sales whose time has the shape ``YYYY-MM-DDTHH:MM:SS[.ffffff]±HH:MM`` (or ``Z``) with a valid
calendar date (29 February aside) go through SQL; any other sale, and every imported order, goes
through the Python pass, so a malformed time can never stop the rebuild and reads as it does in the
incremental fold. SKUs and member ids are ordered byte-wise (``COLLATE "C"``), as Python orders them.
The keys and secondary indexes are dropped for the load and built again after (one sort instead of
millions of inserts into a B-tree).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from tenpo.cloud.db import Central

_DAY = r"(0[13578]|1[02])-(0[1-9]|[12]\d|3[01])|(0[469]|11)-(0[1-9]|[12]\d|30)|02-(0[1-9]|1\d|2[0-8])"
SHAPE = rf"^[1-9]\d{{3}}-({_DAY})T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{{1,6}})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
_OFFSET = ("CASE WHEN right(s.at, 1) = 'Z' THEN interval '0 minutes' ELSE"
           " make_interval(mins => (CASE WHEN substr(right(s.at, 6), 1, 1) = '-' THEN -1 ELSE 1 END)"
           " * (substr(right(s.at, 5), 1, 2)::int * 60 + substr(right(s.at, 2), 1, 2)::int)) END")  # fmt: skip

# The shape as the stores write it (JST, no fraction, this century) tested without the regular expression, which
# costs as much as parsing the sale's JSON: fixed positions, then each field in the set of its valid values (a
# hashed lookup). Any other time goes to the regex.
def _within(values: Iterable[object]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


_MONTHS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MONTH_DAYS = _within(f'{m:02d}-{d:02d}' for m, n in enumerate(_MONTHS, 1) for d in range(1, n + 1))
_JST_SHAPED = ("at LIKE '____-__-__T__:__:__+09:00'"
               f" AND left(at, 4) IN {_within(range(2000, 2100))}"
               f" AND substr(at, 6, 5) IN {_MONTH_DAYS}"
               f" AND substr(at, 12, 5) IN {_within(f'{h:02d}:{m:02d}' for h in range(24) for m in range(60))}"
               f" AND substr(at, 18, 2) IN {_within(f'{m:02d}' for m in range(60))}")  # fmt: skip

# The costly part of each sale (its JSON, its time's shape) is worked out in parallel workers when the server
# has them: a CREATE TABLE AS may run in parallel where an INSERT may not, and this session's temporary SQL
# function, marked PARALLEL SAFE, takes the per-sale subquery into the workers. jsonb: the document parsed once
# (json would parse it again for each ->), as the incremental reading does.
SKUS = """CREATE OR REPLACE FUNCTION pg_temp.analytics_sale_skus(sale text) RETURNS text LANGUAGE sql IMMUTABLE
PARALLEL SAFE COST 1000 AS $$
SELECT COALESCE(string_agg(DISTINCT (l->>'sku') COLLATE "C", ' ' ORDER BY (l->>'sku') COLLATE "C"), '')
FROM jsonb_array_elements(sale::jsonb->'lines') l WHERE (l->>'qty')::numeric > 0 $$"""
STAGE = f"""CREATE TEMP TABLE analytics_stage ON COMMIT DROP AS
SELECT store_id, stream, receipt_no, member_id, at, CASE WHEN {_JST_SHAPED} THEN true ELSE at ~ %s END AS shaped, total, kind,
       CASE WHEN kind = 'sale' THEN pg_temp.analytics_sale_skus(sale) ELSE '' END AS items FROM sales"""
# Then one pass over them: a sale of another shape leaves a placeholder row (day '', items its key as a JSON
# array) that ``load_sales`` takes out again and hands to the Python reading. A time written in JST (as the
# stores write it) is on its own JST day: no arithmetic for it.
SALES = f"""INSERT INTO analytics_purchases(purchase_id, customer, channel, store_id, day, amount, is_sale, items)
SELECT 'store:' || s.store_id || ':' || s.stream || ':' || s.receipt_no, COALESCE(a.member_id, s.member_id), 'store',
       s.store_id,
       CASE WHEN NOT s.shaped THEN '' WHEN right(s.at, 6) = '+09:00' THEN left(s.at, 10)
            ELSE to_char(substr(s.at, 1, 19)::timestamp - {_OFFSET} + interval '9 hours', 'YYYY-MM-DD') END,
       s.total, CASE WHEN s.kind = 'sale' THEN 1 ELSE 0 END,
       CASE WHEN NOT s.shaped THEN json_build_array(s.store_id, s.stream, s.receipt_no)::text ELSE s.items END
FROM analytics_stage s LEFT JOIN member_aliases a ON a.alias = s.member_id"""
PLACEHOLDERS = "FROM analytics_purchases WHERE day = ''"

# One sort of each member's purchases, sales first (by day, then id): the first row is the first sale, the
# next one the second sale if it is a sale; totals over the whole partition (a refund lowers the monetary value).
# Byte-wise ("C") keys: the order Python uses, and sorts that compare bytes rather than go through the locale.
MEMBERS = """INSERT INTO analytics_members(customer, first_day, first_purchase, first_channel, second_day,
    second_purchase, last_day, frequency, monetary)
SELECT customer, day, purchase_id, channel, CASE WHEN next_is_sale = 1 THEN next_day END,
       CASE WHEN next_is_sale = 1 THEN next_purchase END, last_day, frequency, monetary
FROM (SELECT customer, day, purchase_id, channel, is_sale, row_number() OVER w AS rn,
             lead(is_sale) OVER w AS next_is_sale, lead(day) OVER w AS next_day, lead(purchase_id) OVER w AS next_purchase,
             max(CASE WHEN is_sale = 1 THEN day END) OVER m AS last_day, sum(is_sale) OVER m AS frequency,
             sum(amount) OVER m AS monetary
      FROM analytics_purchases WHERE customer IS NOT NULL
      WINDOW m AS (PARTITION BY customer COLLATE "C"),
             w AS (m ORDER BY is_sale DESC, day COLLATE "C", purchase_id COLLATE "C")) f
WHERE rn = 1 AND is_sale = 1"""

# Per scope first; the chain's figures are their sums (every purchase has exactly one scope).
_BASKETS = ("SELECT CASE WHEN store_id IS NOT NULL THEN 'store:' || store_id ELSE 'channel:' || channel END"
            " AS scope, items FROM analytics_purchases WHERE is_sale = 1 AND items <> ''")  # fmt: skip
SCOPES = f"INSERT INTO analytics_scopes(scope, purchases) SELECT scope, count(*) FROM ({_BASKETS}) b GROUP BY scope"
ITEMS = f"""INSERT INTO analytics_items(scope, sku, n)
SELECT scope, sku, count(*) FROM (SELECT scope, unnest(string_to_array(items, ' ')) AS sku FROM ({_BASKETS}) b) x
GROUP BY scope, sku"""
CHAIN = ("INSERT INTO analytics_scopes(scope, purchases) SELECT '*', sum(purchases) FROM analytics_scopes"
         " HAVING count(*) > 0",
         "INSERT INTO analytics_items(scope, sku, n) SELECT '*', sku, sum(n) FROM analytics_items GROUP BY sku")  # fmt: skip

# ``items`` is sorted byte-wise (both writers sort it so), so the pair (i < j) of positions is the pair a < b.
# A basket of c <= SMALL SKUs meets its c(c-1)/2 pairs of positions in a fixed list keyed by c (a hash join: no
# function call per basket); a larger one, rare, pairs its own positions up. Each basket is split once.
# Written in key order: a byte-wise sort is cheaper than the locale's, and the key's build then finds them sorted.
SMALL = 8
_POSITIONS = ", ".join(f"({c}, {i}, {j})" for c in range(2, SMALL + 1) for j in range(2, c + 1) for i in range(1, j))
PAIRS = f"""INSERT INTO analytics_pairs(scope, a, b, n)
WITH baskets AS MATERIALIZED (
    SELECT string_to_array(items, ' ') AS skus FROM analytics_purchases WHERE is_sale = 1 AND items LIKE '% %')
SELECT '*', x.a, x.b, count(*)
FROM (SELECT k.skus[p.i] AS a, k.skus[p.j] AS b FROM baskets k
      JOIN (VALUES {_POSITIONS}) p(c, i, j) ON p.c = cardinality(k.skus)
      UNION ALL
      SELECT x.sku, y.sku FROM baskets k, unnest(k.skus) WITH ORDINALITY x(sku, i),
             unnest(k.skus) WITH ORDINALITY y(sku, j) WHERE cardinality(k.skus) > {SMALL} AND x.i < y.j) x
GROUP BY x.a, x.b
ORDER BY x.a COLLATE "C", x.b COLLATE "C"
"""

# The rebuilt tables' keys and indexes: dropped for the load, built again after (DDL is transactional here).
KEYS = {
    "analytics_purchases": ("analytics_purchases_pkey", "purchase_id"),
    "analytics_members": ("analytics_members_pkey", "customer"),
    "analytics_items": ("analytics_items_pkey", "scope, sku"),
    "analytics_pairs": ("analytics_pairs_pkey", "scope, a, b"),
}
INDEXES = {
    "analytics_purchases_customer": "CREATE INDEX analytics_purchases_customer ON analytics_purchases(customer, day)",
    "analytics_purchases_day": "CREATE INDEX analytics_purchases_day ON analytics_purchases(day)",
    "analytics_pairs_b": "CREATE INDEX analytics_pairs_b ON analytics_pairs(scope, b)",
}


def drop_indexes(db: Central) -> None:
    """Keys and indexes off the (emptied) tables, and room to sort and hash in memory for this transaction:
    at 10 million lines the member sort takes about 500 MB and the pair counts 400 MB (the default 4 MB
    spills them to disk)."""
    db.execute("SET LOCAL work_mem = '1GB'")
    db.execute("SET LOCAL maintenance_work_mem = '512MB'")
    for name in INDEXES:
        db.execute(f"DROP INDEX IF EXISTS {name}")
    for table, (name, _columns) in KEYS.items():
        db.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")


def load_sales(db: Central) -> list[tuple[str, str, str]]:
    """Store sales of the standard time shape, straight from ``sales`` (inside the caller's transaction); the
    keys (store, stream, receipt) of the others, for the Python reading."""
    db.conn.execute(SKUS)
    db.conn.execute(STAGE, (SHAPE,))
    db.conn.execute(SALES)
    db.conn.execute("DROP TABLE analytics_stage")
    keys = [tuple(json.loads(items)) for (items,) in db.all(f"SELECT items {PLACEHOLDERS}")]
    if keys:
        db.execute(f"DELETE {PLACEHOLDERS}")
    return keys


def keyed(count: int) -> str:
    """A ``read_sales`` condition for ``count`` keys (store, stream, receipt) given as 3 * count parameters."""
    return f"(s.store_id, s.stream, s.receipt_no) IN ({', '.join(['(?, ?, ?)'] * count)})"


def derive(db: Central) -> None:
    """Members, SKU, pair and purchase counts from ``analytics_purchases``, then the keys and indexes again."""
    for statement in (MEMBERS, SCOPES, ITEMS, *CHAIN, PAIRS):
        db.conn.execute(statement)
    for table, (name, columns) in KEYS.items():
        db.conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} PRIMARY KEY ({columns})")
    for statement in INDEXES.values():
        db.conn.execute(statement)
    for table in ("analytics_purchases", "analytics_members", "analytics_pairs"):
        db.conn.execute(f"ANALYZE {table}")
