"""Loyalty after a member merge at HQ (issue 17), SQLite and PostgreSQL: on the aggregator's path the winner's
`member.loyalty` comes after the `member.merge` in the feed; the merged ledger expires as one, first in first out
over both people's lots (a correction entry as of the last expiry run, the balance sent again); the loser's rank
log rows follow the person to the golden id."""

from __future__ import annotations

import json
import time
import uuid
from datetime import date, datetime
from pathlib import Path

import pytest

from tenpo.cloud.apply import apply_batch
from tenpo.cloud.db import Central
from tenpo.cloud.loyalty import store as loyalty
from tenpo.cloud.members.config import MembersConfig
from tenpo.cloud.members.imports import import_orders
from tenpo.cloud.members.resolve import manual_merge, unmerge
from tenpo.cloud.members.store import Pending, publish
from tenpo.shared.loyalty import EXPIRY_KIND, JST, LoyaltyConfig, Rank, replay
from tenpo.shared.protocol import Event, EventBatch
from tests.support.stores import central_with_s001

INSERT = ("INSERT INTO points_ledger(member_id, delta, kind, ref, store_id, stream, store_seq, created_at)"
          " VALUES (?, ?, ?, ?, 'S001', 'hand', ?, ?)")  # fmt: skip
META = ("INSERT INTO loyalty_points_meta(store_id, stream, store_seq, member_id, kind, delta, ref, at, checked)"
        " VALUES ('S001', 'hand', ?, ?, ?, ?, ?, ?, 1)")  # fmt: skip


@pytest.fixture
def central(central_url: str, tmp_path: Path) -> Central:
    yield from central_with_s001(central_url, tmp_path)


class Store:
    def __init__(self, db: Central) -> None:
        self.db, self.seq, self.hand = db, 0, 0

    def send(self, kind: str, payload: dict[str, object]) -> None:
        self.seq += 1
        event = Event(self.seq, uuid.uuid4().hex, kind, 1, int(time.time() * 1000) << 16, payload)
        ack = apply_batch(self.db, "S001", EventBatch("stream-1", [event]))
        assert ack.hwm == self.seq and not ack.error

    def entry(self, member_id: str, delta: int, day: date) -> None:
        """A points entry as it stands in HQ's ledger once applied: the row and when it happened at the store."""
        self.hand += 1
        at = datetime(day.year, day.month, day.day, 15, tzinfo=JST).timestamp()
        kind = "accrual" if delta > 0 else "redemption"
        with self.db.transaction():
            self.db.execute(INSERT, (member_id, delta, kind, f"R{self.hand}", self.hand, at))
            self.db.execute(META, (self.hand, member_id, kind, delta, f"R{self.hand}", at))


def feed(db: Central, kind: str, member_id: str) -> list[tuple[int, dict[str, object]]]:
    rows = db.all("SELECT seq, data FROM changes WHERE kind = ? AND key = ? ORDER BY seq", (kind, member_id))
    return [(int(seq), json.loads(data)) for seq, data in rows]


def balance(db: Central, member_id: str) -> int:
    return int(db.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (member_id,), 0))


def merge(db: Central, winner: str, loser: str) -> None:
    with db.transaction():
        pending = Pending()
        manual_merge(db, winner, loser, MembersConfig(), time.time(), pending)
        publish(db, pending, time.time())


def test_on_the_aggregators_path_the_winners_loyalty_follows_the_merge_in_the_feed(central: Central,
                                                                                  tmp_path: Path) -> None:  # fmt: skip
    orders = tmp_path / "orders.jsonl"
    orders.write_text(json.dumps({
        "order_id": "W1", "channel": "web", "ordered_at": "2026-05-01T10:00:00+09:00",
        "customer": {"name": "山田太郎", "phone": "090-1234-5678", "kana": "ヤマダタロウ"},
        "lines": [{"sku": "A1", "qty": 1, "price": 3000}]}, ensure_ascii=False) + "\n", encoding="utf-8")  # fmt: skip
    import_orders(central, orders)
    (golden,) = [str(r[0]) for r in central.all("SELECT member_id FROM members")]
    # The store registers the same person: HQ's apply resolves it to the web member and merges (one batch).
    Store(central).send("member.registered", {"member_id": "S001-a1", "name": "山田 太郎", "kana": "ヤマダタロウ",
                                              "phone": "+819012345678"})  # fmt: skip
    ((merge_seq, merged),) = feed(central, "member.merge", golden)
    assert merged["losers"] == ["S001-a1"]
    sent = feed(central, "member.loyalty", golden)
    assert sent, "the winner's loyalty is sent after a merge"
    assert min(seq for seq, _ in sent) > merge_seq, "the stores get the winner's loyalty after the merge itself"
    version = central.scalar("SELECT version FROM loyalty_members WHERE member_id = ?", (golden,))
    assert version == sent[-1][0], "the loyalty row names the change that carried it"


def test_a_merge_expires_the_combined_lots_first_in_first_out_as_of_the_last_run(central: Central) -> None:
    store = Store(central)
    store.send("member.registered", {"member_id": "S001-A", "name": "山田 花子", "phone": "090-1111-2222"})
    store.send("member.registered", {"member_id": "S001-B", "name": "佐藤 太郎", "phone": "080-3333-4444"})
    store.entry("S001-A", 100, date(2025, 1, 10))  # good through 2026-01-31
    store.entry("S001-B", -100, date(2025, 2, 10))  # B had nothing: a debt that B's next accrual pays
    store.entry("S001-B", 100, date(2025, 12, 10))  # pays B's debt: nothing of B's is left to expire
    night = date(2026, 2, 1)
    assert loyalty.run_expiry(central, night).expired == 100  # A's January lot, taken from A
    assert (balance(central, "S001-A"), balance(central, "S001-B")) == (0, 0)

    merge(central, "S001-A", "S001-B")
    # One person: B's February redemption used A's lot before it ended, B's December accrual is a lot of its own.
    entries = loyalty.member_entries(central, "S001-A")
    union = replay([e for e in entries if e.kind != EXPIRY_KIND], as_of=night)
    assert (union.expired, union.balance) == (0, 100)
    assert -sum(e.delta for e in entries if e.kind == EXPIRY_KIND) == union.expired, "expiry corrected on merge"
    assert balance(central, "S001-A") == 100
    merge_seq = feed(central, "member.merge", "S001-A")[-1][0]
    seq, sent = feed(central, "points.balance", "S001-A")[-1]
    assert seq > merge_seq and sent["balance"] == 100, "the stores hear the corrected balance"
    lots = feed(central, "member.loyalty", "S001-A")[-1][1]["lots"]
    assert lots == [{"expires_on": "2026-12-31", "points": 100}]
    assert loyalty.run_expiry(central, night).expired == 0, "the next run finds nothing left to do"

    with central.transaction():  # and apart again: each one's own lots, expired as before
        pending = Pending()
        unmerge(central, "S001-B", MembersConfig(), time.time(), pending)
        publish(central, pending, time.time())
    assert (balance(central, "S001-A"), balance(central, "S001-B")) == (0, 0)
    assert loyalty.run_expiry(central, night).expired == 0


def test_the_losers_rank_log_follows_the_person_to_the_golden_id(central: Central) -> None:
    store = Store(central)
    store.send("member.registered", {"member_id": "S001-A", "name": "山田 花子", "phone": "090-1111-2222"})
    store.send("member.registered", {"member_id": "S001-B", "name": "佐藤 太郎", "phone": "080-3333-4444"})
    loyalty.run_ranks(central, loyalty.today_jst())
    logged = {int(r[0]) for r in central.all("SELECT id FROM loyalty_rank_log WHERE member_id = 'S001-B'")}
    assert logged
    merge(central, "S001-A", "S001-B")
    assert central.all("SELECT id FROM loyalty_rank_log WHERE member_id = 'S001-B'") == []
    assert logged <= {int(r[0]) for r in central.all("SELECT id FROM loyalty_rank_log WHERE member_id = 'S001-A'")}
    with central.transaction():  # apart again: B's rows are B's
        pending = Pending()
        unmerge(central, "S001-B", MembersConfig(), time.time(), pending)
        publish(central, pending, time.time())
    assert logged <= {int(r[0]) for r in central.all("SELECT id FROM loyalty_rank_log WHERE member_id = 'S001-B'")}


def test_a_rank_job_that_read_the_members_before_a_merge_leaves_nothing_under_the_losers_id(
        central: Central, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    store = Store(central)
    store.send("member.registered", {"member_id": "S001-A", "name": "山田 花子", "phone": "090-1111-2222"})
    store.send("member.registered", {"member_id": "S001-B", "name": "佐藤 太郎", "phone": "080-3333-4444"})
    ranked = LoyaltyConfig.rank_for
    merged: list[bool] = []

    def rank_for(self: LoyaltyConfig, spend: int) -> Rank:  # the job has read the members: a merge commits now
        if not merged:
            merged.append(True)
            merge(central, "S001-A", "S001-B")
        return ranked(self, spend)

    monkeypatch.setattr(LoyaltyConfig, "rank_for", rank_for)
    loyalty.run_ranks(central, loyalty.today_jst())
    assert merged
    assert central.all("SELECT id FROM loyalty_rank_log WHERE member_id = 'S001-B'") == []
    assert central.all("SELECT member_id FROM loyalty_members WHERE member_id = 'S001-B'") == []
    assert central.all("SELECT seq FROM changes WHERE kind = 'member.loyalty' AND key = 'S001-B'") == []
    assert central.one("SELECT 1 FROM loyalty_members WHERE member_id = 'S001-A'")
