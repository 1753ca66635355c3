"""A member's visits as HQ knows them: for the HQ monitor, `tenpo cloud visits` and member screens."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tenpo.cloud.db import Central


@dataclass(frozen=True, slots=True)
class Visit:
    store_id: str
    store_name: str | None
    visit_id: str
    member_id: str
    arrived_at: float
    left_at: float | None  # None: still in the store, or the departure has not reached HQ yet
    dwell_s: float | None
    interrupted: bool  # the store's agent stopped during the visit; its end is approximate
    coupons: tuple[str, ...]  # rules that fired during this visit

    def as_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def member_visits(db: Central, member_id: str, *, also: Iterable[str] = (), limit: int = 100) -> list[Visit]:
    """Visits of ``member_id`` at every store, newest first.

    ``also``: ids merged into this member (provisional store ids HQ unified), whose visits are theirs.
    """
    ids = [member_id, *also]
    marks = ", ".join("?" for _ in ids)
    rows = db.all(
        "SELECT v.store_id, s.name, v.visit_id, v.member_id, v.arrived_at, v.left_at, v.dwell_s, v.interrupted"
        f" FROM visits v LEFT JOIN stores s ON s.store_id = v.store_id WHERE v.member_id IN ({marks})"
        " ORDER BY v.arrived_at DESC, v.visit_id LIMIT ?",
        (*ids, limit),
    )
    coupons: dict[tuple[str, str], list[str]] = {}
    for store_id, visit_id, rule in db.all(
        f"SELECT store_id, visit_id, rule FROM coupons WHERE member_id IN ({marks}) AND visit_id IS NOT NULL"
        " ORDER BY triggered_at",
        ids,
    ):
        coupons.setdefault((store_id, visit_id), []).append(rule)
    return [
        Visit(
            store_id=store_id, store_name=name, visit_id=visit_id, member_id=mid, arrived_at=float(arrived_at),
            left_at=None if left_at is None else float(left_at), dwell_s=None if dwell is None else float(dwell),
            interrupted=bool(interrupted), coupons=tuple(coupons.get((store_id, visit_id), ())),
        )  # fmt: skip
        for store_id, name, visit_id, mid, arrived_at, left_at, dwell, interrupted in rows
    ]


def erase_member_visits(db: Central, member_id: str) -> int:
    """Erasure: a member's location history goes with them. Call inside the erasure's transaction."""
    deleted = 0
    for table in ("visits", "coupons", "zone_stays"):
        deleted += db.execute(f"DELETE FROM {table} WHERE member_id = ?", (member_id,)).rowcount
    return deleted
