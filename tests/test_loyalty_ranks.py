"""Loyalty at HQ on SQLite and PostgreSQL: ranks from rolling spend sent to the stores, accruals held to the
rank a store had, the expiry job (idempotent) and the offline rule through real apply (both orders)."""

from __future__ import annotations

import json
import math
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.db import Central
from tenpo.cloud.feed import snapshot_chunk
from tenpo.cloud.loyalty import store as loyalty
from tenpo.cloud.loyalty.jobs import nightly
from tenpo.edge import db as edge_db
from tenpo.edge.feed import SNAPSHOT_HANDLERS
from tenpo.edge.loyalty import standing
from tenpo.shared.loyalty import JST
from tenpo.shared.protocol import Event, EventBatch, SnapshotRequest
from tests.support.stores import central_with_s001

RANKS_TOML = """
[loyalty]
expiry_months = 12
[[loyalty.ranks]]
name = "レギュラー"
threshold = 0
[[loyalty.ranks]]
name = "シルバー"
threshold = 10000
multiplier_pct = 150
[[loyalty.ranks]]
name = "ゴールド"
threshold = 30000
multiplier_pct = 200
"""
THRESHOLDS = [(30000, "ゴールド", 200), (10000, "シルバー", 150), (0, "レギュラー", 100)]
AS_OF = date(2026, 11, 30)


@pytest.fixture
def url(central_url: str) -> str:
    return central_url


@pytest.fixture
def central(central_url: str, tmp_path: Path) -> Central:
    for db in central_with_s001(central_url, tmp_path):
        (tmp_path / "loyalty.toml").write_text(RANKS_TOML, encoding="utf-8")
        loyalty.set_config(db, tmp_path / "loyalty.toml")
        yield db


class Store:
    """Events as store S001 writes them, applied through HQ's real apply."""

    def __init__(self, db: Central) -> None:
        self.db = db
        self.seq = 0

    def apply(self, *events: tuple[str, dict[str, object], float]) -> None:
        batch = []
        for kind, payload, at in events:
            self.seq += 1
            batch.append(Event(self.seq, uuid.uuid4().hex, kind, 1, int(at * 1000) << 16, payload))
        ack = apply_batch(self.db, "S001", EventBatch("stream-1", batch))
        assert ack.hwm == self.seq and not ack.error

    def member(self, member_id: str) -> None:
        self.apply(("member.registered", {"member_id": member_id, "name": "山田 花子"}, _t(date(2025, 1, 2))))

    def sale(self, receipt: str, member_id: str, total: int, day: date, *, earned: int = 0, redeemed: int = 0,
             kind: str = "sale", cursor: int | None = None, claim: tuple[str, int, int] | None = None,
             extra: dict[str, object] | None = None) -> None:  # fmt: skip
        at = _t(day)
        events: list[tuple[str, dict[str, object], float]] = []
        if redeemed:
            events.append(("points.entry", {"member_id": member_id, "delta": -redeemed, "kind": "redemption",
                                            "ref": receipt}, at))  # fmt: skip
        if earned:
            accrual: dict[str, object] = {"member_id": member_id, "delta": earned, "kind": "accrual", "ref": receipt}
            if claim:
                accrual.update(rank=claim[0], multiplier_pct=claim[1], base=claim[2])
            accrual.update(extra or {})
            events.append(("points.entry", accrual, at))
        events.append(("sale.completed" if kind == "sale" else "sale.refunded", {
            "receipt_no": receipt, "kind": kind, "refund_of": "R0" if kind == "refund" else None,
            "at": datetime(day.year, day.month, day.day, 15, tzinfo=JST).isoformat(), "member_id": member_id,
            "total": total, "rates": [{"rate": 10, "tax": total // 11}], "stock_movements": [],
            "points_entries": [], "points_earned": earned, "points_redeemed": redeemed, "feed_cursor": cursor}, at))
        self.apply(*events)


def _t(day: date, hour: int = 15) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=JST).timestamp()


def balance(db: Central, member_id: str) -> int:
    return int(db.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (member_id,), 0))


def loyalty_changes(db: Central, member_id: str) -> list[dict[str, object]]:
    rows = db.all("SELECT data FROM changes WHERE kind = 'member.loyalty' AND key = ? ORDER BY seq", (member_id,))
    return [json.loads(r[0]) for r in rows]


def expected_rank(spend: int) -> tuple[str, int]:
    return next((name, pct) for threshold, name, pct in THRESHOLDS if spend >= threshold)


# ---------------------------------------------------------------------------- ranks


def test_ranks_follow_rolling_twelve_month_spend_and_reach_the_stores_once(central: Central, url: str, capsys) -> None:
    store = Store(central)
    sales = {  # member -> [(total, day, kind)]
        "S001-A": [(8000, date(2026, 3, 1), "sale"), (4000, date(2026, 11, 30), "sale")],
        "S001-B": [(50000, date(2025, 11, 30), "sale"), (9000, date(2026, 6, 1), "sale")],  # the first is 12 months old
        "S001-C": [(40000, date(2026, 5, 1), "sale"), (15000, date(2026, 5, 2), "refund")],
        "S001-D": [],
    }
    n = 0
    for member_id, rows in sales.items():
        store.member(member_id)
        for total, day, kind in rows:
            n += 1
            store.sale(f"R{n}", member_id, total, day, kind=kind)
    assert main(["cloud", "loyalty", "ranks", "--db", url, "--as-of", AS_OF.isoformat(), "--json"]) == 0
    printed = {row["member_id"]: row for row in json.loads(capsys.readouterr().out)}
    start = AS_OF.replace(year=AS_OF.year - 1)
    for member_id, rows in sales.items():
        spend = sum((-t if k == "refund" else t) for t, d, k in rows if start < d <= AS_OF)
        name, pct = expected_rank(spend)
        assert (printed[member_id]["spend"], printed[member_id]["rank"], printed[member_id]["multiplier_pct"]) == (
            spend, name, pct)
        sent = loyalty_changes(central, member_id)
        assert [(c["rank"], c["multiplier_pct"]) for c in sent] == [(name, pct)]
    loyalty.run_ranks(central, AS_OF)
    assert all(len(loyalty_changes(central, m)) == 1 for m in sales), "an unchanged rank is not sent again"
    store.sale("R99", "S001-D", 12000, AS_OF)
    changed = [r for r in loyalty.run_ranks(central, AS_OF) if r.previous != r.rank]
    assert [(r.member_id, r.rank) for r in changed] == [("S001-D", "シルバー")]
    assert loyalty_changes(central, "S001-D")[-1]["rank"] == "シルバー"


def test_an_accrual_beyond_the_rank_the_store_had_is_taken_back_once(central: Central) -> None:
    store = Store(central)
    store.member("S001-A")
    store.sale("R1", "S001-A", 20000, date(2026, 10, 1))
    loyalty.run_ranks(central, AS_OF)  # シルバー: x1.5
    cursor = int(central.scalar("SELECT max(seq) FROM changes"))
    store.sale("R2", "S001-A", 10000, AS_OF, earned=150, cursor=cursor, claim=("シルバー", 150, 100))
    assert balance(central, "S001-A") == 150, "an accrual at the rank HQ had sent stands"
    store.sale("R3", "S001-A", 10000, AS_OF, earned=300, cursor=cursor, claim=("プラチナ", 300, 100))
    # x3 claimed on a x1.5 rank: the most x1.5 can give is on the yen behind 100 x1 points, up to 10,100 yen.
    most = math.ceil(10100 / 100 * 1.5)
    assert balance(central, "S001-A") == 150 + most, "the excess is taken back"
    taken = central.all("SELECT delta, ref FROM points_ledger WHERE kind = 'adjustment' AND member_id = 'S001-A'")
    assert [(d, r.split(":")[0]) for d, r in taken] == [(-(300 - most), "loyalty-excess")]
    audit = central.all("SELECT action FROM audit_log WHERE subject = 'S001-A' AND action LIKE ?", ("loyalty.%",))
    assert audit == [("loyalty.excess_accrual",)]
    # Earned before the store heard of the rank (cursor 0): x1 was all it could claim.
    store.sale("R4", "S001-A", 10000, AS_OF, earned=150, cursor=0, claim=("シルバー", 150, 100))
    assert balance(central, "S001-A") == 150 + most + 101


def test_a_bad_campaign_date_from_a_store_is_a_dead_letter_not_a_crash(central: Central) -> None:
    store = Store(central)
    store.member("S001-A")
    store.sale("R1", "S001-A", 1000, AS_OF, earned=10, extra={"expires_on": "2026-02-31"})
    assert balance(central, "S001-A") == 0
    reasons = [r for (r,) in central.all("SELECT reason FROM dead_letters")]
    assert any("expires_on" in r and "calendar date" in r for r in reasons)
    assert loyalty.run_expiry(central, AS_OF).expired == 0


# ---------------------------------------------------------------------------- expiry


def test_the_expiry_job_takes_lots_past_their_day_once_and_never_below_zero(central: Central, url: str, capsys) -> None:
    store = Store(central)
    for m in ("S001-A", "S001-B"):
        store.member(m)
    store.sale("R1", "S001-A", 10000, date(2025, 10, 5), earned=100)  # good through 2026-10-31
    store.sale("R2", "S001-A", 10000, date(2025, 12, 5), earned=100)  # good through 2026-12-31
    store.sale("R3", "S001-A", 1000, date(2026, 3, 1), redeemed=30)  # takes from the October lot first
    store.sale("R4", "S001-B", 10000, date(2025, 9, 1), earned=100)
    store.sale("R5", "S001-B", 1000, date(2025, 9, 2), redeemed=100)  # nothing left to expire
    assert main(["cloud", "loyalty", "expire", "--db", url, "--as-of", "2026-11-01", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["expired"] == 70 and report["members"] == 1
    assert balance(central, "S001-A") == 100 and balance(central, "S001-B") == 0
    assert loyalty.run_expiry(central, date(2026, 11, 1)).expired == 0, "running again expires nothing"
    assert main(["cloud", "loyalty", "lots", "S001-A", "--db", url, "--as-of", "2026-11-01", "--json"]) == 0
    lots = json.loads(capsys.readouterr().out)
    assert lots["lots"] == [{"expires_on": "2026-12-31", "points": 100}] and lots["balance"] == 100
    sent = loyalty_changes(central, "S001-A")[-1]
    assert sent["lots"] == [{"expires_on": "2026-12-31", "points": 100}]
    with pytest.raises(Exception, match="never goes back"):
        loyalty.run_expiry(central, date(2026, 10, 1))
    # Incremental: the next nights read only members with news or a lot ending before the day.
    assert loyalty.run_expiry(central, date(2026, 12, 31)).members_seen == 0
    store.sale("R6", "S001-B", 10000, date(2026, 12, 31), earned=100)
    report = loyalty.run_expiry(central, date(2027, 1, 1))
    assert (report.members_seen, report.expired) == (2, 100)  # B for its sale, A for its December lot
    assert balance(central, "S001-A") == 0 and balance(central, "S001-B") == 100


@pytest.mark.parametrize("order", ["redemption first", "expiry first"])
def test_an_offline_redemption_on_the_last_day_is_honoured_whichever_reaches_hq_first(central: Central,
                                                                                       order: str) -> None:
    store = Store(central)
    store.member("S001-A")
    last_day = date(2026, 11, 30)
    loyalty.grant(central, "S001-A", 120, last_day, "campaign:autumn", now=_t(date(2026, 11, 1)))
    job_day = last_day + timedelta(days=1)

    def redeem() -> None:  # sold in the afternoon of the campaign's last day, offline; reaches HQ whenever
        store.sale("R1", "S001-A", 1000, last_day, redeemed=120)

    if order == "redemption first":
        redeem()
        assert loyalty.run_expiry(central, job_day).expired == 0
    else:
        assert loyalty.run_expiry(central, job_day).expired == 120
        assert balance(central, "S001-A") == 0
        redeem()
    assert balance(central, "S001-A") == 0, "never below zero"
    assert central.scalar("SELECT count(*) FROM conflicts WHERE subject = 'S001-A'") == 0
    assert loyalty.run_expiry(central, job_day).expired == 0
    assert balance(central, "S001-A") == 0


def test_a_new_store_bootstraps_each_members_rank_and_lots(central: Central, tmp_path: Path) -> None:
    store = Store(central)
    store.member("S001-A")
    store.sale("R1", "S001-A", 40000, date(2026, 11, 1), earned=400)
    loyalty.run_ranks(central, AS_OF)
    replica = edge_db.connect(tmp_path / "new.db")
    as_of = int(central.scalar("SELECT max(seq) FROM changes"))
    request = SnapshotRequest(snapshot_id=f"{as_of}.0.test", entity="loyalty", stream="new-stream")
    chunk = snapshot_chunk(central, "S001", request)
    rows = [r for r in chunk.rows if r["member_id"] == "S001-A"]
    assert [(r["rank"], r["multiplier_pct"]) for r in rows] == [expected_rank(40000)]
    with edge_db.transaction(replica) as conn:
        SNAPSHOT_HANDLERS["loyalty"](conn, "S001", chunk.rows, None)
    held = standing(replica.conn, "S001-A", 400, now=_t(AS_OF))
    assert (held.rank, held.multiplier_pct) == expected_rank(40000)
    assert held.lots == ((date(2027, 11, 30), 400),)


def test_the_nightly_job_expires_then_ranks_as_of_today_in_tokyo(central: Central, url: str) -> None:
    store = Store(central)
    store.member("S001-A")
    store.sale("R1", "S001-A", 40000, date(2025, 10, 5), earned=400)  # good through 2026-10-31
    store.sale("R2", "S001-A", 12000, date(2026, 6, 1))  # within the 12 months that count for the rank
    night = _t(date(2026, 11, 1), 0) + 30 * 60  # 00:30 JST on 1 November, as the scheduler runs it
    nightly(url, night)
    runs = central.all("SELECT job, as_of FROM loyalty_runs ORDER BY id")
    assert runs == [("expire", "2026-11-01"), ("ranks", "2026-11-01")]
    assert balance(central, "S001-A") == 0
    assert loyalty_changes(central, "S001-A")[-1]["rank"] == expected_rank(12000)[0]  # R1 is 13 months old
