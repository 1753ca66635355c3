"""Checkout engine timing: price, tax and settle a 5-line member sale, and render its receipt.

Pure CPU (no database): the lead's commit-latency benchmark adds the SQLite transaction.
Run: .venv/bin/python -m bench.bench_checkout
"""

from __future__ import annotations

import json
import time
from datetime import datetime

from tenpo.edge.checkout import (
    CheckoutConfig,
    Discount,
    MemberInfo,
    Payment,
    Product,
    SaleRequest,
    Scan,
    checkout,
    render_receipt,
)
from tenpo.edge.checkout.codes import with_check_digit

PRODUCTS = {
    with_check_digit(f"4900000000{n:02d}"): Product(f"P{n}", with_check_digit(f"4900000000{n:02d}"), name, price, cls)
    for n, (name, price, cls) in enumerate(
        [
            ("おにぎり 鮭", 150, "reduced"),
            ("緑茶 500ml", 140, "reduced"),
            ("台所用洗剤", 398, "standard"),
            ("Tシャツ M", 1980, "standard"),
            ("幕の内弁当", 540, "reduced"),
        ]
    )
}


class _Catalog:
    def by_gtin(self, gtin: str) -> Product | None:
        return PRODUCTS.get(gtin)

    def by_sku(self, sku: str) -> Product | None:
        return None


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)]


def bench_checkout(iterations: int = 5000) -> dict[str, float]:
    """p50/p99 in microseconds of checkout() and of checkout() + render_receipt()."""
    config = CheckoutConfig(registration_number="T1234567890123")
    catalog = _Catalog()
    request = SaleRequest(
        "000001",
        datetime(2025, 4, 1, 10, 0),
        tuple(Scan(code) for code in PRODUCTS),
        member=MemberInfo("M-001", 1000),
        redeem_points=100,
        payments=(Payment("cash", 5000),),
        receipt_discounts=(Discount.parse("5%"),),
    )
    engine: list[float] = []
    with_receipt: list[float] = []
    clock = time.perf_counter
    for _ in range(iterations):
        start = clock()
        sale = checkout(request, catalog, config)
        middle = clock()
        render_receipt(sale, config, store_name="テンポ 渋谷店")
        end = clock()
        engine.append((middle - start) * 1e6)
        with_receipt.append((end - start) * 1e6)
    return {
        "checkout_p50_us": round(_percentile(engine, 0.50), 1),
        "checkout_p99_us": round(_percentile(engine, 0.99), 1),
        "checkout_and_receipt_p50_us": round(_percentile(with_receipt, 0.50), 1),
        "checkout_and_receipt_p99_us": round(_percentile(with_receipt, 0.99), 1),
    }


if __name__ == "__main__":
    print(json.dumps(bench_checkout(), indent=2))
