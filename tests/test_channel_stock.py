"""Store stock for the web shop: `tenpo channel stock --sku S [--store ID] --json` through a real aggregator,
from what the stores' agents reported, with each store's reserved units and the age of its last report."""

from __future__ import annotations

import json
import time

from tenpo.sandbox import wait_until
from tests.test_channel_support import Chain, chain, tenpo  # noqa: F401  (fixture)


def stock(where: Chain, *args: str) -> dict[str, object]:
    done = tenpo("channel", "stock", *args, "--json", "--broker", where.broker.url)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_stock_per_store_with_reserved_available_and_the_age_of_each_report(chain: Chain) -> None:  # noqa: F811
    chain.receive("S001", "TSHIRT-M", 5)
    chain.receive("S002", "TSHIRT-M", 2)
    with chain.client() as web:
        assert web.reserve("TSHIRT-M", "S001", 2, key="shibuya-1").state == "confirmed"
    answer = stock(chain, "--sku", "TSHIRT-M")
    rows = {row["store_id"]: row for row in answer["stores"]}  # type: ignore[attr-defined]
    assert {s: (r["on_hand"], r["reserved"], r["available"]) for s, r in rows.items()} == {
        "S001": (5, 2, 3), "S002": (2, 0, 2)}  # fmt: skip
    for row in rows.values():
        assert row["online"] is True and 0 <= row["as_of"] < 30, row  # "confirmed a few seconds ago"

    # One store only; a store that is down keeps its last report, and the report ages.
    chain.stop_store("S002")
    wait_until(lambda: stock(chain, "--sku", "TSHIRT-M", "--store", "S002")["stores"][0]["online"] is False, 30,  # type: ignore[index]
               what="S002 offline at HQ")  # fmt: skip
    first = stock(chain, "--sku", "TSHIRT-M", "--store", "S002")["stores"][0]  # type: ignore[index]
    time.sleep(1.1)  # the age itself is what is measured
    later = stock(chain, "--sku", "TSHIRT-M", "--store", "S002")["stores"][0]  # type: ignore[index]
    assert (later["on_hand"], later["available"]) == (2, 2)
    assert later["as_of"] >= first["as_of"] + 1.0 and later["reported_at"] == first["reported_at"]


def test_unknown_sku_or_store_is_not_found_with_exit_1(chain: Chain) -> None:  # noqa: F811
    for args in (("--sku", "NO-SUCH"), ("--sku", "UMBRELLA", "--store", "S999")):
        done = tenpo("channel", "stock", *args, "--json", "--broker", chain.broker.url)
        assert done.returncode == 1 and "not_found" in done.stderr and done.stdout == ""
    bad = tenpo("channel", "stock", "--sku", "../x", "--broker", chain.broker.url)
    assert bad.returncode == 1 and "bad_request" in bad.stderr
    nobody = tenpo("channel", "stock", "--sku", "UMBRELLA", "--timeout", "1", "--broker", "mqtt://127.0.0.1:1")
    assert nobody.returncode == 1 and "unavailable" in nobody.stderr
