"""PostgreSQL: the apply writes its batch's stock levels itself, in one upsert (cloud/stock_apply.py, migration 25).

The ledger's insert trigger stands aside only for the apply's own COPY of its ledger rows; every other
writer of the ledger, in the same transaction or not, still moves the levels through the trigger.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path

import pytest

from tenpo.cloud.admin import add_store
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.db import Central
from tenpo.cloud.ledgers import stock_entry
from tenpo.cloud.plan import Plan
from tenpo.cloud.stock_apply import APPLY_MARK, write_stock_entries
from tenpo.shared import crypto
from tenpo.shared.protocol import Event, EventBatch


@pytest.fixture
def central(postgres_url: str, tmp_path: Path) -> Central:
    db = Central(postgres_url)
    crypto.generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    for store_id in ("S001", "S002"):
        add_store(db, store_id, (tmp_path / "k.pub").read_text())
    return db


def _stock(seq: int, sku: str, delta: int) -> Event:
    return Event(seq, uuid.uuid4().hex, "stock.adjusted", 1, seq << 16,
                 {"sku": sku, "location": "floor", "delta": delta, "reason": "cycle count", "ref": None})  # fmt: skip


def _ledger_sums(db: Central) -> dict[tuple[str, str], int]:
    rows = db.all("SELECT store_id, sku, sum(delta) FROM stock_ledger GROUP BY store_id, sku")
    return {(store_id, sku): int(total) for store_id, sku, total in rows}


def _levels(db: Central) -> dict[tuple[str, str], int]:
    return {
        (store_id, sku): int(level)
        for store_id, sku, level in db.all("SELECT store_id, sku, on_hand FROM stock_levels")
    }


def test_levels_and_their_feed_entries_follow_the_ledger(central: Central) -> None:
    rng = random.Random(3)
    expected: dict[tuple[str, str], int] = {}
    seq = {"S001": 0, "S002": 0}
    for round_no in range(6):
        for store_id in ("S001", "S002"):
            events = []
            for _ in range(60):  # 60 events over 8 SKUs (and a new one each round): keys repeat within a batch
                seq[store_id] += 1
                sku, delta = rng.choice([f"K{n}" for n in range(8)] + [f"NEW{round_no}"]), rng.choice((-3, -1, 1, 2, 5))
                events.append(_stock(seq[store_id], sku, delta))
                expected[(store_id, sku)] = expected.get((store_id, sku), 0) + delta
            ack = apply_batch(central, store_id, EventBatch("s1", events))
            assert ack.hwm == seq[store_id] and not ack.error
    assert _levels(central) == expected == _ledger_sums(central)  # counted once: not by the trigger as well
    # Each level's version is its newest feed entry, and that entry says the level's on-hand.
    newest: dict[str, tuple[int, dict[str, object]]] = {}
    for change_seq, key, data in central.all(
        "SELECT seq, key, data FROM changes WHERE kind = 'stock.level' ORDER BY seq"
    ):
        newest[key] = (int(change_seq), json.loads(data))
    levels = central.all("SELECT store_id, sku, on_hand, version FROM stock_levels")
    assert len(levels) == len(newest) == len(expected)
    for store_id, sku, level, version in levels:
        change_seq, data = newest[f"{store_id}/{sku}"]
        assert (int(version), data["version"], data["on_hand"]) == (change_seq, change_seq, int(level))
    central.close()


def test_other_writers_of_the_ledger_keep_the_trigger(central: Central) -> None:
    now = time.time()
    plan = Plan()
    rows = [stock_entry(store_id="S001", stream="s1", sku="A", delta=d, reason="count", ref=None, store_seq=n, at=now)[1]
            for n, d in enumerate((4, 1), start=1)]  # fmt: skip
    plan.stock_touched.update({("S001", "A"), ("S001", "untouched")})
    with central.transaction():
        write_stock_entries(central, rows, plan, now)
        assert central.scalar("SELECT current_setting('tenpo.stock_levels', true)") == ""  # the trigger took it away
        # later in the same transaction (a hook, a fix): the trigger counts it
        central.execute(*stock_entry(store_id="S001", stream="s1", sku="A", delta=10, reason="fix", ref=None,
                                     store_seq=3, at=now))  # fmt: skip
    assert plan.stock_touched == {("S001", "untouched")}  # left for publish_changes
    assert _levels(central) == {("S001", "A"): 15}
    # a savepoint rolled back takes a mark set inside it back too (the one-event-at-a-time path)
    with central.transaction():
        with pytest.raises(RuntimeError), central.savepoint():
            central.execute("SELECT set_config('tenpo.stock_levels', ?, true)", (APPLY_MARK,))
            raise RuntimeError("this event fails")
        central.execute(*stock_entry(store_id="S001", stream="s1", sku="A", delta=-2, reason="count", ref=None,
                                     store_seq=4, at=now))  # fmt: skip
    # and a new transaction starts without it
    central.execute(*stock_entry(store_id="S002", stream="s1", sku="B", delta=7, reason="count", ref=None,
                                 store_seq=1, at=now))  # fmt: skip
    assert _levels(central) == {("S001", "A"): 13, ("S002", "B"): 7} == _ledger_sums(central)
    central.close()


def test_any_sku_text_and_number_reach_the_levels_as_sent(central: Central) -> None:
    # the upsert's arrays are literals written by the apply: each element reads back as sent (a SKU "NULL" too)
    skus = ["NULL", "null", "A.b", "x:y-z_1", "9", "Inf"]
    at = 1764543000.123456
    rows = [
        stock_entry(store_id="S001", stream="s1", sku=sku, delta=n - 4, reason="count", ref=None, store_seq=n, at=at)[1]
        for n, sku in enumerate(skus, start=1)
    ]
    rows.append(stock_entry(store_id="S001", stream="s1", sku="big", delta=10**14, reason="count", ref=None,
                            store_seq=99, at=at)[1])  # fmt: skip
    with central.transaction():
        write_stock_entries(central, rows, Plan(), at)
    found = {
        sku: (int(level), float(as_of))
        for sku, level, as_of in central.all("SELECT sku, on_hand, as_of FROM stock_levels")
    }
    assert found == {**{sku: (n - 4, at) for n, sku in enumerate(skus, start=1)}, "big": (10**14, at)}
    central.close()


def test_without_migration_25_the_trigger_keeps_the_levels(postgres_url: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # An HQ whose trigger does not stand aside (before migration 25): the apply leaves the levels to it
    from tenpo.cloud import db as cloud_db

    monkeypatch.setattr(cloud_db, "MIGRATIONS", [m for m in cloud_db.MIGRATIONS if m[0] != 25])
    db = Central(postgres_url)
    crypto.generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    add_store(db, "S001", (tmp_path / "k.pub").read_text())
    events = [_stock(n, f"K{n % 3}", n) for n in range(1, 10)]
    assert apply_batch(db, "S001", EventBatch("s1", events)).hwm == 9
    assert _levels(db) == _ledger_sums(db) == {("S001", "K0"): 18, ("S001", "K1"): 12, ("S001", "K2"): 15}
    versions = dict(db.all("SELECT sku, version FROM stock_levels"))
    feed = {key: int(seq) for seq, key in db.all("SELECT seq, key FROM changes WHERE kind = 'stock.level'")}
    assert {f"S001/{sku}": int(v) for sku, v in versions.items()} == feed
    db.close()
