"""A web order paid through the channel API as a purchase HQ's other areas see (issue 18 §4).

``points-capture`` and ``points-earn`` record the order in ``member_orders`` — the table imported orders
live in — so the rank job's rolling spend (tenpo.cloud.loyalty.store.spend_by_member), analytics (RFM
monetary, every channel) and the member's history at the stores (``purchase.recorded``) count it like an
imported order, with no second code path to keep in step.

An order is attached to one of its member's source records, as an imported order is to its customer's: the
member's own store record when there is one (source ``store``, id = the member id), else its oldest. So a merge
moves it with that record and an erasure detaches it (tenpo.cloud.members.privacy), as for imports.

**Exactly once.** The row is keyed ``(order_id, channel)``. Each operation that adds to it runs once: a retry
with the same idempotency key gets the remembered answer without running again (tenpo.cloud.channel.extras),
a hold is captured once, an order earns once. So the order's total is the sum of what each of them paid —
the captured points (a tender, as at a store: docs/checkout.md) plus the yen paid otherwise — however often
the shop retries. A later Shopify import of the same order finds the row and reconciles it (its points
differ by an ``adjustment``), never a second purchase.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple
from tenpo.cloud.sales.effects import purchase_change

log = logging.getLogger(__name__)

ROW_HASH = "channel-api"  # never a file row's hash: an import of the same order rewrites the row from its file
STATUS = "paid"  # counted by the rank job and by analytics' purchase statuses


def member_source(db: Central, member_id: str) -> tuple[str, str] | None:
    """The source record a channel order of ``member_id`` (golden) is attached to."""
    found = db.one("SELECT source, source_id FROM member_sources WHERE member_id = ?"
                   " ORDER BY CASE WHEN source = 'store' AND source_id = ? THEN 0 ELSE 1 END, id LIMIT 1",
                   (member_id, member_id))  # fmt: skip
    return None if found is None else (str(found[0]), str(found[1]))


def record_purchase(db: Central, channel: str, member_id: str, order: str, paid: int, points: int,
                    now: float) -> list[ChangeTuple]:  # fmt: skip
    """Add ``paid`` yen (points tendered included) and ``points`` earned to web order ``order`` of golden member
    ``member_id``; the ``purchase.recorded`` change for the stores. Inside the caller's transaction."""
    if paid <= 0 and points <= 0:
        return []
    source = member_source(db, member_id)
    if source is None:  # every live golden member has a source record; one made by hand may not
        log.warning("channel %s: order %s of member %s has no source record to count under", channel, order, member_id)
        return []
    at = datetime.fromtimestamp(now, UTC).isoformat()  # when HQ heard of it, as imports' ordered_at: UTC ISO
    row = db.one(
        "INSERT INTO member_orders(order_id, channel, source, source_id, ordered_at, status, total, points, row_hash,"
        " imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(order_id, channel) DO UPDATE SET"
        " total = member_orders.total + excluded.total, points = member_orders.points + excluded.points,"
        " imported_at = excluded.imported_at RETURNING ordered_at, total, points",
        (order, channel, *source, at, STATUS, paid, points, ROW_HASH, now))  # fmt: skip
    assert row is not None
    return [purchase_change(member_id, {"channel": channel, "ref": order, "kind": "order", "at": row[0],
                                        "total": int(row[1]), "points": int(row[2])})]  # fmt: skip
