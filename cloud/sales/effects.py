"""Planners for `sale.completed` and `sale.refunded`: keep the sale, and check the ledgers it moved.

The sale's stock and points movements arrive as their own `stock.moved` / `points.entry` events,
written before the sale event in the same store transaction, so by the time the sale applies its
movements are in the ledgers (same batch or an earlier one). The planner stores the sale row and
adds one hook per member and per (store, sku) that look for a balance below zero or stock oversold.
"""

from __future__ import annotations

import json
from typing import Any

from tenpo.cloud.members.store import golden_id
from tenpo.cloud.plan import Hook, Origin, PayloadError, Plan, Planner
from tenpo.cloud.sales.conflicts import check_points, check_stock
from tenpo.shared.events import SaleCompleted
from tenpo.shared.protocol import Event

INSERT_SALE = (
    "INSERT INTO sales(store_id, stream, receipt_no, kind, refund_of, at, member_id, total, tax, points_earned,"
    " points_redeemed, sale, store_seq, feed_cursor, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (store_id, stream, receipt_no) DO NOTHING"
)


def _plan_sale(plan: Plan, origin: Origin, event: Event, p: SaleCompleted, now: float) -> None:
    """``p`` is a SaleCompleted or a SaleRefunded; its ``kind`` must say the same."""
    kind = type(p).KIND
    if p.kind != kind:
        raise PayloadError(f"kind: expected {kind!r} for {event.type}, got {p.kind!r}")
    if kind == "refund" and p.refund_of is None:
        raise PayloadError("refund_of: missing")
    tax = sum(r.tax for r in p.rates)
    plan.add(
        INSERT_SALE,
        (origin.store_id, origin.stream, p.receipt_no, kind, p.refund_of, p.at, p.member_id, p.total, tax,
         p.points_earned, p.points_redeemed, json.dumps(event.payload, ensure_ascii=False), event.seq, p.feed_cursor,
         now),
    )  # fmt: skip
    store_id = origin.store_id
    if p.member_id:
        purchase = {"channel": f"store:{store_id}", "ref": p.receipt_no, "kind": kind, "at": p.at,
                    "total": p.total if kind == "sale" else -abs(p.total), "points": p.points_earned}  # fmt: skip
        plan.hooks[f"sales.purchase:{store_id}/{p.receipt_no}"] = _purchase_hook(p.member_id, purchase)
    for member in sorted({e.member_id for e in p.points_entries}):
        plan.hooks[f"sales.points:{member}"] = _points_hook(member, store_id)
    for sku in sorted({m.sku for m in p.stock_movements}):
        plan.hooks[f"sales.stock:{store_id}/{sku}"] = _stock_hook(store_id, sku)


def _points_hook(member_id: str, store_id: str) -> Hook:
    def hook(db, now):  # type: ignore[no-untyped-def]
        return check_points(db, member_id, store_id, now)

    return hook


def _purchase_hook(member_id: str, purchase: dict[str, Any]) -> Hook:
    """Every store learns of the purchase, under the member's golden id, for the clerk's history."""

    def hook(db, now):  # type: ignore[no-untyped-def]
        return [purchase_change(golden_id(db, member_id), purchase)]

    return hook


def purchase_change(member_id: str, purchase: dict[str, Any]) -> tuple[str, str, None, dict[str, Any]]:
    """The feed entry for one purchase in any channel (docs/protocol.md, purchase.recorded)."""
    purchase_id = f"{purchase['channel']}:{purchase['ref']}"
    return ("purchase.recorded", purchase_id, None,
            {"purchase_id": purchase_id, "member_id": member_id, **purchase, "version": 0})  # fmt: skip


def _stock_hook(store_id: str, sku: str) -> Hook:
    def hook(db, now):  # type: ignore[no-untyped-def]
        return check_stock(db, store_id, sku, now)

    return hook


PLANNERS: dict[str, Planner] = {
    "sale.completed": _plan_sale,
    "sale.refunded": _plan_sale,
}
