"""Reading purchases out of HQ's own tables: store sales and refunds (``sales``, migration 2) and
imported orders (``member_orders`` / ``member_order_lines``, migration 5), each under its golden member.

A store sale names the member the store knew (a provisional id, or one merged away since): the golden
id is ``member_aliases`` (merged-away → golden) or the id itself. An order belongs to the golden member
of its customer's source record. The SKUs of a sale come out of its JSON in SQL (SQLite's json_each,
PostgreSQL's jsonb_array_elements), so a full pass does not parse millions of documents in Python.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from tenpo.cloud.db import Central
from tenpo.shared.ids import is_id

from .config import AnalyticsConfig
from .model import Purchase, jst_day

log = logging.getLogger(__name__)
PAGE = 20_000
SEP = "\x1f"  # between the SKUs of an order in one aggregated cell: no SKU or JAN holds it

_SALE_ITEMS = {
    "sqlite": "(SELECT group_concat(DISTINCT json_extract(l.value, '$.sku')) FROM json_each(s.sale, '$.lines') l"
              " WHERE json_extract(l.value, '$.qty') > 0)",
    "postgresql": "(SELECT string_agg(DISTINCT l->>'sku', ',') FROM jsonb_array_elements(s.sale::jsonb->'lines') l"
                  " WHERE (l->>'qty')::numeric > 0)",
}  # fmt: skip
_ORDER_ITEMS = {
    "sqlite": "(SELECT group_concat(COALESCE(i.sku, 'jan:' || i.jan), char(31)) FROM member_order_lines i"
              " WHERE i.order_ref = o.id AND i.qty > 0)",
    "postgresql": "(SELECT string_agg(COALESCE(i.sku, 'jan:' || i.jan), chr(31)) FROM member_order_lines i"
                  " WHERE i.order_ref = o.id AND i.qty > 0)",
}  # fmt: skip


def sales_sql(db: Central, where: str) -> str:
    return (f"SELECT s.store_id, s.stream, s.receipt_no, s.kind, s.at, COALESCE(a.member_id, s.member_id), s.total,"
            f" CASE WHEN s.kind = 'sale' THEN {_SALE_ITEMS[db.dialect]} END FROM sales s"
            f" LEFT JOIN member_aliases a ON a.alias = s.member_id WHERE {where}")  # fmt: skip


def orders_sql(db: Central, where: str) -> str:
    return (f"SELECT o.order_id, o.channel, o.ordered_at, o.status, o.total, COALESCE(a.member_id, ms.member_id),"
            f" {_ORDER_ITEMS[db.dialect]} FROM member_orders o"
            " LEFT JOIN member_sources ms ON ms.source = o.source AND ms.source_id = o.source_id"
            f" LEFT JOIN member_aliases a ON a.alias = ms.member_id WHERE {where}")  # fmt: skip


def sale_purchase(row: Sequence[Any]) -> Purchase | None:
    store_id, stream, receipt_no, kind, at, member, total, items = row
    try:
        day = jst_day(str(at))
    except ValueError:
        log.warning("analytics: sale %s/%s has an unreadable time %r: left out", store_id, receipt_no, at)
        return None
    skus = frozenset(s for s in (items or "").split(",") if s) if kind == "sale" else frozenset()
    return Purchase(f"store:{store_id}:{stream}:{receipt_no}", member or None, "store", str(store_id), day,
                    int(total), kind == "sale", skus)  # fmt: skip


def order_purchase(row: Sequence[Any], config: AnalyticsConfig) -> Purchase | None:
    """None for an order that is not a purchase (unpaid, cancelled, undated)."""
    order_id, channel, ordered_at, status, total, member, items = row
    if (status or "").lower() not in config.purchase_statuses or not ordered_at:
        return None
    try:
        day = jst_day(str(ordered_at))
    except ValueError:
        log.warning("analytics: order %s:%s has an unreadable time %r: left out", channel, order_id, ordered_at)
        return None
    skus = frozenset(s for s in (items or "").split(SEP) if is_id(s))  # a web SKU that is not an id is left out
    return Purchase(f"order:{channel}:{order_id}", member or None, str(channel), None, day, int(total), True, skus)


def _paged(db: Central, sql: str, params: Sequence[Any], stream: bool = True) -> Iterator[Sequence[Any]]:
    """Rows of ``sql`` without holding them all (a server-side cursor on PostgreSQL when ``stream``: a
    few rows, as an incremental refresh reads, are cheaper in one plain round trip)."""
    if db.dialect == "postgresql" and stream:
        with db.conn.transaction(), db.conn.cursor(name="tenpo_analytics") as cur:
            cur.itersize = PAGE
            cur.execute(db.sql(sql), tuple(params))
            yield from cur
        return
    cursor = db.execute(sql, params)
    while rows := cursor.fetchmany(PAGE):
        yield from rows


def read_sales(db: Central, where: str = "1 = 1", params: Sequence[Any] = (), stream: bool = True) -> Iterator[Purchase]:
    for row in _paged(db, sales_sql(db, where), params, stream):
        p = sale_purchase(row)
        if p is not None:
            yield p


def read_orders(db: Central, config: AnalyticsConfig, where: str = "1 = 1", params: Sequence[Any] = (),
                stream: bool = True) -> Iterator[tuple[str, Purchase | None]]:
    """(purchase id, purchase or None when the order does not count) per order."""
    for row in _paged(db, orders_sql(db, where), params, stream):
        yield f"order:{row[1]}:{row[0]}", order_purchase(row, config)


def read_all(db: Central, config: AnalyticsConfig) -> Iterator[Purchase]:
    yield from read_sales(db)
    for _key, p in read_orders(db, config):
        if p is not None:
            yield p
