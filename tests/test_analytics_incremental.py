"""Issue 17 §8: the analytics tables kept current incrementally. One sale moves only its member's row
and its own pairs; after sales, refunds, re-imported orders, merges and an unmerge the incremental
tables equal a full recomputation; the scheduled job runs it and sends recommendations."""

from __future__ import annotations

import datetime as dt
import json
import random
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from tenpo.cli import main
from tenpo.cloud.analytics.config import AnalyticsConfig
from tenpo.cloud.analytics.job import analytics_job
from tenpo.cloud.analytics.refresh import full_refresh, incremental_refresh, table_rows
from tenpo.cloud.db import Central
from tenpo.cloud.members.config import MembersConfig
from tenpo.cloud.members.resolve import unmerge
from tenpo.cloud.members.store import Pending
from tenpo.cloud.scheduler import HqRetention, start_hq_scheduler
from tenpo.shared.changes import decode_change
from tests.test_analytics import by_member, expected_rfm, reference_rfm
from tests.test_analytics_data import (
    AS_OF,
    NOW,
    add_refund,
    add_sale,
    import_web,
    make_orders,
    merge,
    purchases_frame,
    seed,
)


def keyed(rows: dict[str, Any]) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """Each table's rows by primary key (purchase id, member, (scope, sku), (scope, a, b), scope)."""
    widths = {"analytics_items": 2, "analytics_pairs": 3}
    return {t: {tuple(r[: widths.get(t, 1)]): tuple(r) for r in v} for t, v in rows.items()}


def changed(before: dict[tuple[Any, ...], Any], after: dict[tuple[Any, ...], Any]) -> set[tuple[Any, ...]]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def test_one_sale_changes_only_its_members_row_and_its_pairs(central_url: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    db = Central(central_url)
    g = seed(db, tmp_path)
    full_refresh(db, AnalyticsConfig())
    before = keyed(table_rows(db))
    skus = ["SKU05", "SKU11", "SKU20"]
    with db.transaction():
        add_sale(db, g, random.Random(1), "S001-000000", "2026-06-30T20:00:00+09:00", "S002", NOW + 60, skus)
    member = str(db.scalar("SELECT member_id FROM member_aliases WHERE alias = 'S001-000000'"))  # merged at seeding
    assert main(["cloud", "analytics", "refresh", "--no-send", "--json", "--db", central_url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["purchases"], report["members"]) == (1, 1)
    after = keyed(table_rows(db))
    assert len(changed(before["analytics_purchases"], after["analytics_purchases"])) == 1
    assert changed(before["analytics_members"], after["analytics_members"]) == {(member,)}
    old, new = before["analytics_members"][(member,)], after["analytics_members"][(member,)]
    assert (new[7], new[6]) == (old[7] + 1, "2026-06-30"), "one more purchase, the last one today"
    scopes = ("*", "store:S002")
    # pairs are kept chain-wide (a store's are counted from its purchases when asked); SKUs per scope
    assert changed(before["analytics_pairs"], after["analytics_pairs"]) == {("*", a, b) for a, b in combinations(skus, 2)}
    for key in changed(before["analytics_pairs"], after["analytics_pairs"]):
        assert after["analytics_pairs"][key][3] == before["analytics_pairs"].get(key, (0, 0, 0, 0))[3] + 1
    assert changed(before["analytics_items"], after["analytics_items"]) == {(s, sku) for s in scopes for sku in skus}
    assert changed(before["analytics_scopes"], after["analytics_scopes"]) == {(s,) for s in scopes}
    assert main(["cloud", "analytics", "refresh", "--no-send", "--json", "--db", central_url]) == 0
    assert json.loads(capsys.readouterr().out)["purchases"] == 0, "folded once: the overlap window adds nothing twice"
    incremental = table_rows(db)
    full_refresh(db, AnalyticsConfig())
    assert table_rows(db) == incremental
    db.close()


def test_incremental_equals_full_after_refunds_reimports_merges_and_an_unmerge(central_url: str, tmp_path: Path) -> None:
    db = Central(central_url)
    g = seed(db, tmp_path, seed_value=5)
    config = AnalyticsConfig()
    full_refresh(db, config)
    rng = random.Random(99)
    with db.transaction():
        later = [add_sale(db, g, rng, rng.choice([*g.golden, *g.provisional, None]), f"2026-06-{d:02d}T12:00:00+09:00",
                          rng.choice(("S001", "S003")), NOW + 100) for d in range(1, 29)]  # fmt: skip
        for of in later[:5] + [s for s in g.sales if s["kind"] == "sale"][:3]:
            add_refund(db, g, rng, of, NOW + 100)
        # a leap day west of UTC (the next JST day), and a time no one can read (left out, logged, never fatal)
        add_sale(db, g, rng, g.golden[1], "2024-02-29T20:00:00-05:00", "S002", NOW + 100)
        add_sale(db, g, rng, g.golden[1], "yesterday evening", "S002", NOW + 100)
    changed_orders = [{**o, "status": "refunded", "refunded": sum(q * p for _, q, p in o["lines"])} for o in g.orders[:6]]
    changed_orders += [{**o, "status": "paid", "refunded": 0} for o in g.orders if o["status"] == "pending"][:4]
    import_web(db, tmp_path, g, changed_orders + make_orders(rng, 15, start=500), "orders2.csv")
    merge(db, g, rng, 6)
    with db.transaction():
        unmerge(db, g.provisional[0], MembersConfig(), NOW, Pending())
    analytics_job(central_url)  # what the scheduler runs
    incremental = table_rows(db)
    frame = purchases_frame(db, g)
    full_refresh(db, config)
    assert table_rows(db) == incremental
    assert incremental["analytics_purchases"], "the comparison is not vacuous"
    from tenpo.cloud.analytics.reports import rfm  # late: only this check reads a report

    rows = [r.as_json() for r in rfm(db, config, AS_OF)]
    assert by_member(rows) == expected_rfm(reference_rfm(frame, AS_OF))
    assert g.provisional[0] in by_member(rows), "the unmerged store member has its own row again"
    db.close()


def test_the_scheduled_job_sends_changed_recommendations_once(sqlite_url: str, tmp_path: Path) -> None:
    db = Central(sqlite_url)
    g = seed(db, tmp_path)
    analytics_job(sqlite_url)
    sent = db.all("SELECT key, data FROM changes WHERE kind = 'member.recommendations' ORDER BY seq")
    members = {r[0] for r in db.all("SELECT customer FROM analytics_members")}
    assert {key for key, _ in sent} == members and len(sent) == len(members)
    for key, data in sent:
        change = decode_change("member.recommendations", json.loads(data))  # what a store decodes
        assert change.member_id == key and len(change.items) == AnalyticsConfig().recommend_count  # type: ignore[attr-defined]
    analytics_job(sqlite_url)
    assert db.scalar("SELECT count(*) FROM changes WHERE kind = 'member.recommendations'") == len(sent), "unchanged: not sent"
    with db.transaction():
        add_sale(db, g, random.Random(3), g.golden[0], dt.datetime.now(dt.UTC).isoformat(), "S001", NOW + 1e6,
                 ["SKU00", "SKU01", "SKU02", "SKU03", "SKU04", "SKU05"])  # fmt: skip
    analytics_job(sqlite_url)
    newest = db.all("SELECT data FROM changes WHERE kind = 'member.recommendations' AND key = ? ORDER BY seq DESC",
                    (g.golden[0],))  # fmt: skip
    assert len(newest) == 2, "the member who bought was sent new recommendations"
    offered = {i["sku"] for i in json.loads(newest[0][0])["items"]}
    assert not offered & {"SKU00", "SKU01", "SKU02", "SKU03", "SKU04", "SKU05"}, "what was just bought is not offered"
    scheduler = start_hq_scheduler(sqlite_url, HqRetention())
    try:
        assert scheduler.get_job("hq_analytics") is not None
    finally:
        scheduler.shutdown(wait=False)
    db.close()


def test_two_refreshes_at_once_fold_each_sale_once(postgres_url: str, tmp_path: Path) -> None:
    """An aggregator's job and an operator's report refreshing together: one waits, nothing counts twice."""
    import threading  # late: only this test starts threads

    db = Central(postgres_url)
    g = seed(db, tmp_path, members=10, sales=60)
    full_refresh(db, AnalyticsConfig())
    with db.transaction():
        for day in range(1, 21):
            add_sale(db, g, random.Random(day), g.golden[0], f"2026-06-{day:02d}T12:00:00+09:00", "S001", NOW + 50)
    errors: list[BaseException] = []

    def one() -> None:
        conn = Central(postgres_url)
        try:
            incremental_refresh(conn, AnalyticsConfig())
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    incremental = table_rows(db)
    full_refresh(db, AnalyticsConfig())
    assert table_rows(db) == incremental
    db.close()
