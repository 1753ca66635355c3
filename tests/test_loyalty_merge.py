"""Loyalty follows a member merge at HQ (issue 17): `loyalty_members` is derived from the ledger and sales, so a
merge is not a row move. The winner's rank, spend and lots are computed again from both people's history and
sent to the stores, the loser's row goes, nothing is logged as left behind; an unmerge gives each their own
back. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from tenpo.cloud.apply import apply_batch
from tenpo.cloud.db import Central
from tenpo.cloud.loyalty import store as loyalty
from tenpo.cloud.members.config import MembersConfig
from tenpo.cloud.members.privacy import erase_member
from tenpo.cloud.members.resolve import manual_merge, unmerge
from tenpo.cloud.members.store import Pending, publish
from tenpo.shared.loyalty import JST
from tenpo.shared.protocol import Event, EventBatch
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
"""
THRESHOLDS = [(10000, "シルバー", 150), (0, "レギュラー", 100)]


@pytest.fixture
def central(central_url: str, tmp_path: Path) -> Central:
    for db in central_with_s001(central_url, tmp_path):
        (tmp_path / "loyalty.toml").write_text(RANKS_TOML, encoding="utf-8")
        loyalty.set_config(db, tmp_path / "loyalty.toml")
        yield db


class Store:
    def __init__(self, db: Central) -> None:
        self.db, self.seq = db, 0

    def apply(self, kind: str, payload: dict[str, object], at: float) -> None:
        self.seq += 1
        event = Event(self.seq, uuid.uuid4().hex, kind, 1, int(at * 1000) << 16, payload)
        ack = apply_batch(self.db, "S001", EventBatch("stream-1", [event]))
        assert ack.hwm == self.seq and not ack.error

    def sale(self, receipt: str, member_id: str, total: int, earned: int, day: date) -> None:
        at = datetime(day.year, day.month, day.day, 15, tzinfo=JST)
        self.apply("points.entry", {"member_id": member_id, "delta": earned, "kind": "accrual", "ref": receipt},
                   at.timestamp())  # fmt: skip
        self.apply("sale.completed", {
            "receipt_no": receipt, "kind": "sale", "at": at.isoformat(), "member_id": member_id, "total": total,
            "rates": [{"rate": 10, "tax": total // 11}], "stock_movements": [], "points_entries": [],
            "points_earned": earned, "points_redeemed": 0}, at.timestamp())  # fmt: skip


def held(db: Central, member_id: str) -> tuple[str, int, int, list[dict[str, object]]] | None:
    row = db.one("SELECT rank, multiplier_pct, spend, lots FROM loyalty_members WHERE member_id = ?", (member_id,))
    return None if row is None else (str(row[0]), int(row[1]), int(row[2]), json.loads(row[3]))


def feed(db: Central, kind: str, member_id: str) -> list[tuple[int, dict[str, object]]]:
    rows = db.all("SELECT seq, data FROM changes WHERE kind = ? AND key = ? ORDER BY seq", (kind, member_id))
    return [(int(seq), json.loads(data)) for seq, data in rows]


def rank_of(spend: int) -> tuple[str, int]:
    return next((name, pct) for threshold, name, pct in THRESHOLDS if spend >= threshold)


def lot_sum(*lots: list[dict[str, object]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for each in lots:
        for lot in each:
            total[str(lot["expires_on"])] += int(str(lot["points"]))
    return dict(total)


def test_a_merge_recomputes_the_winners_loyalty_and_an_unmerge_gives_each_their_own(central: Central, caplog) -> None:
    store = Store(central)
    yesterday = loyalty.today_jst() - timedelta(days=1)
    store.apply("member.registered", {"member_id": "S001-A", "name": "山田 花子", "phone": "090-1111-2222"},
                time.time() - 86400 * 30)  # fmt: skip
    store.apply("member.registered", {"member_id": "S001-B", "name": "佐藤 太郎", "phone": "080-3333-4444"},
                time.time() - 86400 * 20)  # fmt: skip
    spend = {"S001-A": 0, "S001-B": 0}
    for receipt, member_id, total, earned in (("R1", "S001-A", 6000, 60), ("R2", "S001-A", 2000, 20),
                                              ("R3", "S001-B", 5000, 50)):  # fmt: skip
        store.sale(receipt, member_id, total, earned, yesterday)
        spend[member_id] += total
    loyalty.grant(central, "S001-B", 300, yesterday + timedelta(days=40), "campaign:winter")
    loyalty.run_ranks(central, loyalty.today_jst())
    before = {m: held(central, m) for m in spend}
    assert all(before.values()) and all(b[0] == rank_of(spend[m])[0] for m, b in before.items() if b)
    assert sum(spend.values()) >= 10000 > max(spend.values()), "together (only) they reach the next rank"

    caplog.set_level(logging.WARNING)
    with central.transaction():
        pending = Pending()
        manual_merge(central, "S001-A", "S001-B", MembersConfig(), time.time(), pending)
        publish(central, pending, time.time())
    assert not [r for r in caplog.records if "loyalty_members" in r.getMessage()], caplog.text

    winner = held(central, "S001-A")
    assert winner is not None
    combined = sum(spend.values())
    assert winner[:3] == (*rank_of(combined), combined)
    a_lots, b_lots = before["S001-A"][3], before["S001-B"][3]  # type: ignore[index]
    assert lot_sum(winner[3]) == lot_sum(a_lots, b_lots) and len(winner[3]) == 2  # the sale day's and the campaign's
    assert held(central, "S001-B") is None, "the merged-away id keeps no loyalty row"
    merge_seq = feed(central, "member.merge", "S001-A")[-1][0]
    seq, sent = feed(central, "member.loyalty", "S001-A")[-1]
    assert seq > merge_seq, "the stores get the winner's loyalty after the merge"
    assert (sent["rank"], sent["multiplier_pct"], sent["spend"], sent["lots"]) == winner

    with central.transaction():
        pending = Pending()
        unmerge(central, "S001-B", MembersConfig(), time.time(), pending)
        publish(central, pending, time.time())
    for member_id in spend:
        after = held(central, member_id)
        assert after is not None
        assert after[:3] == (*rank_of(spend[member_id]), spend[member_id])
        assert lot_sum(after[3]) == lot_sum(before[member_id][3])  # type: ignore[index]
        assert feed(central, "member.loyalty", member_id)[-1][1]["lots"] == after[3]
    unmerge_seq = feed(central, "member.unmerge", "S001-A")[-1][0]
    assert feed(central, "member.loyalty", "S001-B")[-1][0] > unmerge_seq
    assert not [r for r in caplog.records if "loyalty_members" in r.getMessage()], caplog.text


def test_an_erasure_drops_the_loyalty_rows_of_every_id_of_the_person(central: Central, caplog) -> None:
    store = Store(central)
    yesterday = loyalty.today_jst() - timedelta(days=1)
    for member_id, name, phone in (("S001-A", "山田 花子", "090-1111-2222"), ("S001-B", "佐藤 太郎", "080-3333-4444")):
        store.apply("member.registered", {"member_id": member_id, "name": name, "phone": phone}, time.time() - 86400)
        store.sale(f"R-{member_id}", member_id, 3000, 30, yesterday)
    store.apply("member.registered", {"member_id": "S001-C", "name": "鈴木 一郎", "phone": "070-5555-6666"},
                time.time() - 86400)  # fmt: skip
    loyalty.run_ranks(central, loyalty.today_jst())
    assert held(central, "S001-B") is not None
    caplog.set_level(logging.WARNING)
    with central.transaction():
        pending = Pending()
        manual_merge(central, "S001-A", "S001-B", MembersConfig(), time.time(), pending)
        publish(central, pending, time.time())
    erase_member(central, "S001-B", "the member asked (test)")  # the merged-away id names the same person
    assert held(central, "S001-A") is None and held(central, "S001-B") is None
    assert held(central, "S001-C") is not None, "someone else's row stays"
    assert not [r for r in caplog.records if "loyalty_members" in r.getMessage()], caplog.text
