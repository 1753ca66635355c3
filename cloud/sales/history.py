"""A member's store sales and refunds as HQ knows them: for `tenpo cloud members show` and member screens."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tenpo.cloud.db import Central


@dataclass(frozen=True, slots=True)
class StoreSale:
    store_id: str
    store_name: str | None
    receipt_no: str
    kind: str  # "sale" or "refund"
    refund_of: str | None
    at: str  # the store's ISO 8601 time of the sale
    member_id: str
    total: int
    points_earned: int
    points_redeemed: int

    def as_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def member_sales(db: Central, member_id: str, *, also: Iterable[str] = (), limit: int = 100) -> list[StoreSale]:
    """Sales and refunds of ``member_id`` at every store, newest first.

    ``also``: ids merged into this member whose sales may still arrive under the old id.
    """
    ids = [member_id, *also]
    marks = ", ".join("?" for _ in ids)
    rows = db.all(
        "SELECT x.store_id, s.name, x.receipt_no, x.kind, x.refund_of, x.at, x.member_id, x.total, x.points_earned,"
        f" x.points_redeemed FROM sales x LEFT JOIN stores s ON s.store_id = x.store_id WHERE x.member_id IN ({marks})"
        " ORDER BY x.at DESC, x.store_id, x.receipt_no LIMIT ?",
        (*ids, limit),
    )
    return [
        StoreSale(store_id, name, receipt_no, kind, refund_of, at, mid, int(total), int(earned), int(redeemed))
        for store_id, name, receipt_no, kind, refund_of, at, mid, total, earned, redeemed in rows
    ]
