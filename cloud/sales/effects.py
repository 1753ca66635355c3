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
from tenpo.cloud.plan import Hook, Origin, PayloadError, Plan, Planner, int_field, text_field
from tenpo.cloud.sales.conflicts import check_points, check_stock
from tenpo.shared.protocol import Event

INSERT_SALE = (
    "INSERT INTO sales(store_id, stream, receipt_no, kind, refund_of, at, member_id, total, tax, points_earned,"
    " points_redeemed, sale, store_seq, feed_cursor, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (store_id, stream, receipt_no) DO NOTHING"
)


def _list_field(payload: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = payload.get(key)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise PayloadError(f"{key}: must be a list of objects")
    return value


def _plan_sale(kind: str) -> Planner:
    def planner(plan: Plan, origin: Origin, event: Event, now: float) -> None:
        p = event.payload
        receipt_no = text_field(p, "receipt_no")
        if p.get("kind") != kind:
            raise PayloadError(f"kind: expected {kind!r} for {event.type}, got {p.get('kind')!r}")
        refund_of = text_field(p, "refund_of", required=kind == "refund")
        member_id = text_field(p, "member_id", required=False)
        total = int_field(p, "total")
        cursor = p.get("feed_cursor")
        if cursor is not None and (isinstance(cursor, bool) or not isinstance(cursor, int)):
            raise PayloadError("feed_cursor: must be an integer")
        rates = _list_field(p, "rates")
        try:
            tax = sum(int(r["tax"]) for r in rates)
            skus = {text_field(m, "sku") for m in _list_field(p, "stock_movements")}
            members = {text_field(e, "member_id") for e in _list_field(p, "points_entries")}
        except (KeyError, TypeError, ValueError) as exc:
            raise PayloadError(f"rates: {exc}") from None
        plan.add(
            INSERT_SALE,
            (origin.store_id, origin.stream, receipt_no, kind, refund_of, text_field(p, "at"), member_id, total, tax,
             int_field(p, "points_earned"), int_field(p, "points_redeemed"), json.dumps(p, ensure_ascii=False),
             event.seq, cursor, now),
        )  # fmt: skip
        store_id = origin.store_id
        if member_id:
            purchase = {"channel": f"store:{store_id}", "ref": receipt_no, "kind": kind, "at": text_field(p, "at"),
                        "total": total if kind == "sale" else -abs(total), "points": int_field(p, "points_earned")}  # fmt: skip
            plan.hooks[f"sales.purchase:{store_id}/{receipt_no}"] = _purchase_hook(member_id, purchase)
        for member in sorted(m for m in members if m):
            plan.hooks[f"sales.points:{member}"] = _points_hook(member, store_id)
        for sku in sorted(s for s in skus if s):
            plan.hooks[f"sales.stock:{store_id}/{sku}"] = _stock_hook(store_id, sku)

    return planner


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
    "sale.completed": _plan_sale("sale"),
    "sale.refunded": _plan_sale("refund"),
}
