"""What store authority costs HQ's apply path (`python -m bench authority`, docs/authority.md).

The same batches are applied with the authority check and with it replaced by a no-op, in interleaved
rounds on fresh SQLite databases (the machine may be shared: best of the rounds on each side), for two
mixes of 500-event batches:

- stock: stock.adjusted only (what bench_sync's apply rate measures);
- counter: sales as a store writes them: two stock moves, a points entry, the sale (the check links each
  entry to its sale; some batches end between them, so entries are held and released).

Limit: the check costs less than 5% of the apply rate. The rates with and without are printed, but on a
shared machine their ratio moves by more than 5% from load alone; the figure held to the limit is the
time spent inside the check as a share of the apply time (best round). Ends with one JSON line.
`TENPO_BENCH_AUTHORITY_EVENTS` (default 20,000 per round) and `TENPO_BENCH_AUTHORITY_ROUNDS` (default 3).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import tenpo.cloud.apply as apply
from tenpo.cloud.admin import add_store
from tenpo.cloud.authority_check import Verdicts, check_batch
from tenpo.cloud.db import Central
from tenpo.shared import crypto
from tenpo.shared.protocol import Event, EventBatch

EVENTS = int(os.environ.get("TENPO_BENCH_AUTHORITY_EVENTS", 20_000))
ROUNDS = int(os.environ.get("TENPO_BENCH_AUTHORITY_ROUNDS", 3))
BATCH = 500
LIMIT = 0.05  # the check may cost at most 5% of the apply rate


def stock_mix(count: int) -> list[Event]:
    return [Event(seq, uuid.uuid4().hex, "stock.adjusted", 1, seq << 16,
                  {"sku": f"SKU-{seq % 97}", "delta": 1, "reason": "count", "location": "floor"})
            for seq in range(1, count + 1)]  # fmt: skip


def counter_mix(count: int) -> list[Event]:
    events: list[Event] = []
    seq = sales = 0
    while len(events) < count:
        sales += 1
        member, receipt = f"S001-{sales % 50:04x}", f"S001-{sales:08d}"
        lines = [("stock.moved", {"sku": f"SKU-{(sales + n) % 97}", "delta": -1, "reason": "sale", "ref": receipt})
                 for n in range(1 + sales % 3)]  # 1-3 lines: batch ends fall between entries and sales too
        for payload_type, payload in (
            *lines,
            ("points.entry", {"member_id": member, "delta": 12, "kind": "accrual", "ref": receipt}),
            ("sale.completed", {"receipt_no": receipt, "kind": "sale", "at": "2026-11-30T10:15:00+09:00",
                                "member_id": member, "total": 1_200, "rates": [{"rate": 10, "tax": 109}],
                                "stock_movements": [], "points_entries": [{"member_id": member, "points": 12}],
                                "points_earned": 12, "points_redeemed": 0}),
        ):  # fmt: skip
            seq += 1
            events.append(Event(seq, uuid.uuid4().hex, payload_type, 1, seq << 16, payload))
    return events[:count]


def rate(workdir: Path, name: str, events: list[Event]) -> float:
    db = Central(f"sqlite:///{workdir / f'{name}.db'}")
    crypto.generate_keypair(workdir / f"{name}.key", workdir / f"{name}.pub")
    add_store(db, "S001", (workdir / f"{name}.pub").read_text())
    started = time.perf_counter()
    for i in range(0, len(events), BATCH):
        apply.apply_batch(db, "S001", EventBatch("bench", events[i : i + BATCH]))
    elapsed = time.perf_counter() - started
    applied = db.scalar("SELECT last_applied_seq FROM stores WHERE store_id = 'S001'")
    assert applied == len(events), f"{name}: applied {applied} of {len(events)}"
    db.close()
    return len(events) / elapsed


def _no_check(db: Central, origin: object, events: list[Event], now: float, decoded: object = None) -> Verdicts:
    return Verdicts()


class _Timed:
    """The real check, timing itself: its share of the apply time is the cost that load cannot blur."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, db: Central, origin: object, events: list[Event], now: float, decoded: object = None) -> Verdicts:
        started = time.perf_counter()
        try:
            return check_batch(db, origin, events, now, decoded)  # type: ignore[arg-type]
        finally:
            self.seconds += time.perf_counter() - started


def compare(workdir: Path, mix: str, make: Callable[[int], list[Event]]) -> dict[str, float]:
    events = make(EVENTS)
    best = {"with": 0.0, "without": 0.0}
    shares = []
    for n in range(ROUNDS):
        for side in ("without", "with") if n % 2 == 0 else ("with", "without"):
            timed = _Timed()
            apply.check_batch = timed if side == "with" else _no_check  # type: ignore[assignment]
            measured = rate(workdir, f"{mix}-{side}-{n}", events)
            best[side] = max(best[side], measured)
            if side == "with":
                shares.append(timed.seconds * measured / len(events))  # check time / apply time
    apply.check_batch = check_batch
    share = min(shares)
    print(f"{mix:8s} apply: {best['with']:,.0f} events/s with the authority check, {best['without']:,.0f} without"
          f" ({1 - best['with'] / best['without']:+.1%}, load-blurred); time in the check: {share:.2%} of the apply"
          f" (limit < {LIMIT:.0%})")  # fmt: skip
    return {f"{mix}_with_per_s": round(best["with"]), f"{mix}_without_per_s": round(best["without"]),
            f"{mix}_check_share": round(share, 4)}  # fmt: skip


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-authority-"))
    print(f"store authority: {EVENTS:,} events per round in batches of {BATCH}, best of {ROUNDS} interleaved rounds"
          f" (load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    result = {**compare(workdir, "stock", stock_mix), **compare(workdir, "counter", counter_mix)}
    print(json.dumps(result))
    return 0 if max(result["stock_check_share"], result["counter_check_share"]) < LIMIT else 1


if __name__ == "__main__":
    raise SystemExit(main())
