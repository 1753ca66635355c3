"""PostgreSQL: a whole batch is applied in pipeline mode (issue 19 §1) — every kind of effect, not only stock, goes
in the one transaction, and a failure still falls back to one event at a time."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from tenpo.cloud.admin import add_store
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.db import Central
from tenpo.shared import crypto
from tenpo.shared.protocol import Event, EventBatch


@pytest.fixture
def central(postgres_url: str, tmp_path: Path) -> Central:
    db = Central(postgres_url)
    crypto.generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    add_store(db, "S001", (tmp_path / "k.pub").read_text())
    return db


def _points(seq: int, member_id: str, delta: int) -> Event:
    return Event(seq, uuid.uuid4().hex, "points.entry", 1, seq << 16,
                 {"member_id": member_id, "delta": delta, "kind": "accrual", "ref": f"R{seq}"})  # fmt: skip


def _sale(seq: int, receipt_no: str, member_id: str, points: int) -> Event:
    """The sale behind the points entries before it (docs/authority.md): its rows are plain inserts (a COPY outside
    a pipeline)."""
    return Event(seq, uuid.uuid4().hex, "sale.completed", 1, seq << 16, {
        "receipt_no": receipt_no, "kind": "sale", "at": "2026-09-21T10:15:00+09:00", "member_id": member_id,
        "total": 11_000, "rates": [{"rate": 10, "tax": 1_000}], "stock_movements": [],
        "points_entries": [{"member_id": member_id, "kind": "accrue", "points": points}], "points_earned": points,
        "points_redeemed": 0,
    })  # fmt: skip


def _stock(seq: int, sku: str, delta: int) -> Event:
    return Event(seq, uuid.uuid4().hex, "stock.adjusted", 1, seq << 16,
                 {"sku": sku, "location": "floor", "delta": delta, "reason": "cycle count", "ref": None})  # fmt: skip


def test_a_batch_of_points_and_stock_applies_whole_with_every_effect(central: Central, caplog) -> None:
    events = [_points(1, "M1", 100), _stock(2, "SKU-1", 5), _sale(3, "R1", "M1", 100), _points(4, "M2", 40),
              _stock(5, "SKU-1", -2), _sale(6, "R4", "M2", 40), _points(7, "M1", 7), _sale(8, "R7", "M1", 7)]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="tenpo.cloud.apply"):
        ack = apply_batch(central, "S001", EventBatch("s1", events))
    assert ack.hwm == 8 and not ack.gap and ack.error is None
    assert not [r for r in caplog.records if "one by one" in r.getMessage()], "applied whole, not event by event"
    balances = dict(central.all("SELECT member_id, balance FROM points_balances"))
    assert {k: int(v) for k, v in balances.items()} == {"M1": 107, "M2": 40}
    assert int(central.scalar("SELECT on_hand FROM stock_levels WHERE store_id = 'S001' AND sku = 'SKU-1'")) == 3
    assert int(central.scalar("SELECT count(*) FROM events WHERE store_id = 'S001'")) == 8
    assert int(central.scalar("SELECT count(*) FROM sales")) == 3
    assert int(central.scalar("SELECT count(*) FROM dead_letters")) == 0
    kinds = {row[0] for row in central.all("SELECT DISTINCT kind FROM changes")}
    assert {"points.balance", "stock.level"} <= kinds
    # the connection is usable for the next batch, and the store's progress was committed
    assert apply_batch(central, "S001", EventBatch("s1", [_stock(9, "SKU-2", 1)])).hwm == 9
    assert int(central.scalar("SELECT last_applied_seq FROM stores WHERE store_id = 'S001'")) == 9


def test_an_event_the_database_refuses_is_alone_a_dead_letter_and_the_rest_apply(central: Central) -> None:
    events = [_points(1, "M1", 10), _sale(2, "R1", "M1", 10), _stock(3, "SKU-1", 2**63)]  # beyond 64 bits
    ack = apply_batch(central, "S001", EventBatch("s1", events))
    assert ack.hwm == 3
    assert int(central.scalar("SELECT balance FROM points_balances WHERE member_id = 'M1'")) == 10
    letters = central.all("SELECT event_seq FROM dead_letters")
    assert [int(seq) for (seq,) in letters] == [3]
    assert int(central.scalar("SELECT count(*) FROM stock_ledger")) == 0
    # nothing of the failed whole-batch attempt is left open: the next batch applies on the same connection
    assert apply_batch(central, "S001", EventBatch("s1", [_stock(4, "SKU-1", 1)])).hwm == 4
    assert int(central.scalar("SELECT on_hand FROM stock_levels WHERE sku = 'SKU-1'")) == 1
