"""Checkout commit latency: a 5-line member sale through `commit_sale` (engine, receipt, ledgers,
outbox, one transaction) next to a bare SQLite transaction writing the same rows (same tables,
same sizes, plain INSERTs: no engine, no lookups, no counters) into a file with the same schema and
durability settings (WAL, synchronous=FULL), interleaved in the same run.

Targets (issue 5): p99 under 10 ms, and under 3x the bare transaction.
Run: .venv/bin/python -m bench.bench_checkout_commit
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tenpo.edge import db as edge_db
from tenpo.edge.checkout import Payment, Scan
from tenpo.edge.checkout.store import SaleOrder, checkout_rules, commit_sale
from tenpo.edge.config import load_config
from tenpo.edge.feed import _upsert_members, _upsert_products
from tenpo.sandbox import write_store_config

SALES = 600
WARMUP = 30
ROW_TABLES = ("sales", "sale_lines", "stock_ledger", "points_ledger", "outbox", "sold_serials")
PRODUCTS = [
    {"sku": f"P{n}", "jan": None, "name": name, "price": price, "tax_class": cls, "version": 1}
    for n, (name, price, cls) in enumerate(
        [("おにぎり 鮭", 150, "reduced"), ("緑茶 500ml", 140, "reduced"), ("台所用洗剤", 398, "standard"),
         ("Tシャツ M", 1980, "standard"), ("幕の内弁当", 540, "reduced")]
    )
]  # fmt: skip


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)]


def _rows(db) -> int:
    return sum(db.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ROW_TABLES)


def _seed(db) -> None:
    with edge_db.transaction(db) as conn:
        _upsert_products(conn, "S001", PRODUCTS, None)
        _upsert_members(conn, "S001", [{"member_id": "M-1", "name": "佐藤 花子", "points": 10**9, "version": 1}], None)


def _rows_of_sale(db, receipt_no: str) -> dict[str, list[tuple]]:
    """What one sale wrote, table by table (outbox: its events), to replay as a bare transaction."""
    conn = db.conn
    by_ref = "SELECT {} FROM {} WHERE {} = ?"
    return {
        "sales": conn.execute(by_ref.format("*", "sales", "receipt_no"), (receipt_no,)).fetchall(),
        "sale_lines": conn.execute(by_ref.format("*", "sale_lines", "receipt_no"), (receipt_no,)).fetchall(),
        "stock_ledger": conn.execute(by_ref.format("sku, location, delta, reason, ref, store_seq, created_at",
                                                   "stock_ledger", "ref"), (receipt_no,)).fetchall(),
        "points_ledger": conn.execute(by_ref.format("member_id, delta, kind, ref, store_seq, created_at",
                                                    "points_ledger", "ref"), (receipt_no,)).fetchall(),
        "outbox": conn.execute("SELECT type, schema, hlc, payload, created_at FROM outbox ORDER BY seq DESC LIMIT 8"
                               ).fetchall(),
    }  # fmt: skip


def _bare_writer(db, template: dict[str, list[tuple]]):  # type: ignore[no-untyped-def]
    """The same rows into the same schema with plain INSERTs: no engine, no lookups, no counters."""
    counter = iter(range(1, 10**9))

    def write() -> None:
        n = next(counter)
        receipt = f"B-{n:08d}"
        with edge_db.transaction(db) as conn:
            for row in template["sales"]:
                conn.execute(f"INSERT INTO sales VALUES ({', '.join('?' * len(row))})", (receipt, *row[1:]))
            for row in template["sale_lines"]:
                conn.execute(f"INSERT INTO sale_lines VALUES ({', '.join('?' * len(row))})", (receipt, *row[1:]))
            for row in template["stock_ledger"]:
                conn.execute("INSERT INTO stock_ledger(sku, location, delta, reason, ref, store_seq, created_at)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?)", (*row[:4], receipt, *row[5:]))  # fmt: skip
            for row in template["points_ledger"]:
                conn.execute("INSERT INTO points_ledger(member_id, delta, kind, ref, store_seq, created_at)"
                             " VALUES (?, ?, ?, ?, ?, ?)", (*row[:3], receipt, *row[4:]))  # fmt: skip
            for k, row in enumerate(template["outbox"]):
                conn.execute("INSERT INTO outbox(seq, id, type, schema, hlc, payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (n * 8 + k, uuid.uuid4().hex, *row))  # fmt: skip

    return write


def bench_commit(workdir: Path, sales: int = SALES) -> dict[str, float]:
    path = write_store_config(workdir, "S001", "mqtt://127.0.0.1:1")
    with path.open("a") as fh:  # every sale redeems 10 points: lift the offline allowance for the run
        fh.write("[checkout]\nmax_redeem_per_member_offline = 1000000000\n")
    config = load_config(str(path))
    db = edge_db.connect(config.database)
    bare_db = edge_db.connect(workdir / "bare.db")  # same schema, same settings, its own file
    _seed(db)
    _seed(bare_db)
    order = SaleOrder(tuple(Scan(f"sku:{p['sku']}") for p in PRODUCTS), "M-1", 10, (Payment("cash", 5000),))
    clock = time.perf_counter
    rules = checkout_rules(config)  # parsed once, as the clerk terminal does

    before = _rows(db)
    first = commit_sale(db, config, order, rules=rules)
    rows_per_sale = _rows(db) - before  # sale, 5 lines, 5 stock, 2 points, 8 events
    bare = _bare_writer(bare_db, _rows_of_sale(db, first.receipt_no))
    before = _rows(bare_db)
    bare()
    assert _rows(bare_db) - before == rows_per_sale

    for _ in range(WARMUP):
        commit_sale(db, config, order, rules=rules)
        bare()
    sale_ms: list[float] = []
    bare_ms: list[float] = []
    for _ in range(sales):  # interleaved, so both see the same disk and cache weather
        start = clock()
        commit_sale(db, config, order, rules=rules)
        middle = clock()
        bare()
        end = clock()
        sale_ms.append((middle - start) * 1000)
        bare_ms.append((end - middle) * 1000)
    db.conn.close()
    bare_db.conn.close()
    result = {
        "rows_per_sale": rows_per_sale,
        "commit_p50_ms": round(_percentile(sale_ms, 0.50), 3),
        "commit_p99_ms": round(_percentile(sale_ms, 0.99), 3),
        "bare_p50_ms": round(_percentile(bare_ms, 0.50), 3),
        "bare_p99_ms": round(_percentile(bare_ms, 0.99), 3),
    }
    result["ratio_p50"] = round(result["commit_p50_ms"] / result["bare_p50_ms"], 2)
    result["ratio_p99"] = round(result["commit_p99_ms"] / result["bare_p99_ms"], 2)
    return result


def main() -> int:
    # Beside the working directory rather than in /tmp, which may be a RAM disk that never syncs.
    with tempfile.TemporaryDirectory(prefix="tenpo-bench-", dir=Path.cwd()) as folder:
        r = bench_commit(Path(folder))
    ok_abs = r["commit_p99_ms"] < 10
    ok_ratio = r["ratio_p99"] < 3
    print(f"checkout commit, 5-line member sale ({r['rows_per_sale']} rows, WAL, synchronous=FULL), {SALES} sales:")
    print(f"  commit_sale      p50 {r['commit_p50_ms']:7.3f} ms   p99 {r['commit_p99_ms']:7.3f} ms   "
          f"(target p99 < 10 ms: {'ok' if ok_abs else 'MISSED'})")  # fmt: skip
    print(f"  bare, same rows  p50 {r['bare_p50_ms']:7.3f} ms   p99 {r['bare_p99_ms']:7.3f} ms")
    print(f"  ratio            p50 {r['ratio_p50']:7.2f}x     p99 {r['ratio_p99']:7.2f}x     "
          f"(target p99 < 3x: {'ok' if ok_ratio else 'MISSED'})")  # fmt: skip
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
