"""HQ's planner for ``stock.snapshot``: a store's own count of its stock, once a day.

The event row itself is what HQ keeps (the events table holds every payload). Applying it compares
the store's levels with HQ's ``stock_levels`` at the same point of the store's stream (everything the
store sent before the snapshot is applied by then) and audits any SKU that differs, so a drift between
the store's ledger and HQ's shows up the next morning instead of at stock-taking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenpo.cloud.changes import audit
from tenpo.cloud.plan import ChangeTuple, Origin, Plan, Planner
from tenpo.shared.events import StockSnapshot
from tenpo.shared.protocol import Event

if TYPE_CHECKING:
    from tenpo.cloud.db import Central

MAX_DRIFT_LISTED = 50  # SKUs named in one audit entry; the count says how many differ in all


def _stock_snapshot(plan: Plan, origin: Origin, event: Event, p: StockSnapshot, now: float) -> None:
    store_counts: dict[str, int] = {}
    for level in p.levels:
        store_counts[level.sku] = store_counts.get(level.sku, 0) + level.on_hand

    def compare(db: Central, _now: float) -> list[ChangeTuple]:
        skus = sorted(store_counts)
        hq: dict[str, int] = {}
        for start in range(0, len(skus), 500):
            chunk = skus[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            hq.update(db.all(f"SELECT sku, on_hand FROM stock_levels WHERE store_id = ? AND sku IN ({marks})",
                             (origin.store_id, *chunk)))  # fmt: skip
            # Entries the same batch applied after the snapshot are not in the store's count.
            for sku, later in db.all(
                f"SELECT sku, sum(delta) FROM stock_ledger WHERE store_id = ? AND stream = ? AND store_seq > ?"
                f" AND sku IN ({marks}) GROUP BY sku", (origin.store_id, origin.stream, event.seq, *chunk)
            ):  # fmt: skip
                hq[sku] = int(hq.get(sku, 0)) - int(later)
        drift = {sku: {"store": count, "hq": int(hq.get(sku, 0))} for sku, count in store_counts.items()
                 if int(hq.get(sku, 0)) != count}  # fmt: skip
        if drift:
            listed = dict(sorted(drift.items())[:MAX_DRIFT_LISTED])
            audit(db, "aggregator", "stock.snapshot_drift", origin.store_id,
                  {"seq": event.seq, "part": p.part, "parts": p.parts, "taken_at": p.taken_at, "skus": len(drift),
                   "drift": listed})  # fmt: skip
        return []

    plan.hooks[f"stock.snapshot:{origin.store_id}:{origin.stream}:{event.seq}"] = compare


PLANNERS: dict[str, Planner] = {"stock.snapshot": _stock_snapshot}
