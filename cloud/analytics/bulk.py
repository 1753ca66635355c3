"""The full rebuild on PostgreSQL in set-based SQL: the same rows the Python pass (tenpo.cloud.analytics
.refresh) writes, without sending millions of sales through the client and back.

Store sales whose time has the shape ``YYYY-MM-DDTHH:MM:SS[.ffffff]±HH:MM`` (or ``Z``) with a valid
calendar date (29 February aside) go through SQL; any other sale, and every imported order, goes
through the Python pass, so a malformed time can never stop the rebuild and reads as it does in the
incremental fold. SKUs and member ids are ordered byte-wise (``COLLATE "C"``), as Python orders them.
The secondary indexes are dropped for the load and built again after (one sort instead of millions
of inserts into a B-tree).
"""

from __future__ import annotations

from tenpo.cloud.db import Central

_DAY = r"(0[13578]|1[02])-(0[1-9]|[12]\d|3[01])|(0[469]|11)-(0[1-9]|[12]\d|30)|02-(0[1-9]|1\d|2[0-8])"
SHAPE = rf"^[1-9]\d{{3}}-({_DAY})T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{{1,6}})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
WHERE_SQL = "s.at ~ %s"  # sales the SQL takes; the Python pass takes NOT (...)

_OFFSET = ("CASE WHEN right(s.at, 1) = 'Z' THEN interval '0 minutes' ELSE"
           " make_interval(mins => (CASE WHEN substr(right(s.at, 6), 1, 1) = '-' THEN -1 ELSE 1 END)"
           " * (substr(right(s.at, 5), 1, 2)::int * 60 + substr(right(s.at, 2), 1, 2)::int)) END")  # fmt: skip

SALES = f"""INSERT INTO analytics_purchases(purchase_id, customer, channel, store_id, day, amount, is_sale, items)
SELECT 'store:' || s.store_id || ':' || s.stream || ':' || s.receipt_no, COALESCE(a.member_id, s.member_id), 'store',
       s.store_id, to_char(substr(s.at, 1, 19)::timestamp - {_OFFSET} + interval '9 hours', 'YYYY-MM-DD'), s.total,
       CASE WHEN s.kind = 'sale' THEN 1 ELSE 0 END,
       CASE WHEN s.kind = 'sale' THEN COALESCE((
           SELECT string_agg(DISTINCT (l->>'sku') COLLATE "C", ' ' ORDER BY (l->>'sku') COLLATE "C")
           FROM json_array_elements(s.sale::json->'lines') l WHERE (l->>'qty')::numeric > 0), '') ELSE '' END
FROM sales s LEFT JOIN member_aliases a ON a.alias = s.member_id WHERE {WHERE_SQL}"""

MEMBERS = """INSERT INTO analytics_members(customer, first_day, first_purchase, first_channel, second_day,
    second_purchase, last_day, frequency, monetary)
SELECT f.customer, f.day, f.purchase_id, f.channel, f.second_day, f.second_purchase, f.last_day, f.frequency, m.monetary
FROM (SELECT customer, day, purchase_id, channel,
             row_number() OVER w AS rn, lead(day) OVER w AS second_day, lead(purchase_id) OVER w AS second_purchase,
             max(day) OVER (PARTITION BY customer) AS last_day, count(*) OVER (PARTITION BY customer) AS frequency
      FROM analytics_purchases WHERE customer IS NOT NULL AND is_sale = 1
      WINDOW w AS (PARTITION BY customer ORDER BY day, purchase_id COLLATE "C")) f
JOIN (SELECT customer, sum(amount) AS monetary FROM analytics_purchases WHERE customer IS NOT NULL GROUP BY customer) m
  ON m.customer = f.customer
WHERE f.rn = 1"""

_BASKETS = ("SELECT purchase_id, CASE WHEN store_id IS NOT NULL THEN 'store:' || store_id ELSE 'channel:' || channel END"
            " AS scope, items FROM analytics_purchases WHERE is_sale = 1 AND items <> ''")  # fmt: skip
SCOPES = f"""INSERT INTO analytics_scopes(scope, purchases)
SELECT COALESCE(scope, '*'), count(*) FROM ({_BASKETS}) b GROUP BY ROLLUP (scope)"""
ITEMS = f"""INSERT INTO analytics_items(scope, sku, n)
SELECT COALESCE(scope, '*'), sku, count(*) FROM (SELECT scope, unnest(string_to_array(items, ' ')) AS sku
FROM ({_BASKETS}) b) x GROUP BY GROUPING SETS ((scope, sku), (sku))"""
# ``items`` is sorted byte-wise (both writers sort it so), so the pair (i < j) of positions is the pair a < b.
PAIRS = """INSERT INTO analytics_pairs(scope, a, b, n)
SELECT '*', x.a, x.b, count(*)
FROM (SELECT string_to_array(items, ' ') AS arr FROM analytics_purchases WHERE is_sale = 1 AND items LIKE '% %') p,
LATERAL (SELECT p.arr[i] AS a, p.arr[j] AS b FROM generate_series(1, cardinality(p.arr)) i,
         generate_series(1, cardinality(p.arr)) j WHERE i < j) x
GROUP BY x.a, x.b"""

INDEXES = {
    "analytics_purchases_customer": "CREATE INDEX analytics_purchases_customer ON analytics_purchases(customer, day)",
    "analytics_purchases_day": "CREATE INDEX analytics_purchases_day ON analytics_purchases(day)",
    "analytics_pairs_b": "CREATE INDEX analytics_pairs_b ON analytics_pairs(scope, b)",
}


def drop_indexes(db: Central) -> None:
    """And room to sort and hash in memory for this transaction (the default 4 MB spills the pair counts to disk)."""
    db.execute("SET LOCAL work_mem = '256MB'")
    for name in INDEXES:
        db.execute(f"DROP INDEX IF EXISTS {name}")


def load_sales(db: Central) -> None:
    """Store sales of the standard time shape, straight from ``sales`` (inside the caller's transaction)."""
    db.conn.execute(SALES, (SHAPE,))


def derive(db: Central) -> None:
    """Members, SKU, pair and purchase counts from ``analytics_purchases``, then the indexes again."""
    for statement in (MEMBERS, SCOPES, ITEMS, PAIRS):
        db.conn.execute(statement)
    for statement in INDEXES.values():
        db.conn.execute(statement)
    db.conn.execute("ANALYZE analytics_purchases")
    db.conn.execute("ANALYZE analytics_pairs")
