"""Group commit (issue 19): waiting batches applied in one transaction leave what applying each alone leaves,
answer each batch as it alone would, and commit nothing when one of them fails (the aggregator then applies
each alone, so a bad event is still a dead letter on its own)."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest

from tenpo.cloud import apply
from tenpo.cloud.admin import add_store
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.apply_group import Waiting, apply_batches, groups
from tenpo.cloud.db import Central
from tenpo.cloud.plan import Decoded, Origin, Plan
from tenpo.sandbox import wait_until
from tenpo.shared import crypto
from tenpo.shared.protocol import Ack, Event, EventBatch


@pytest.fixture
def central(central_url: str, tmp_path: Path) -> Central:
    db = Central(central_url)
    crypto.generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    for store in ("S001", "S002", "S003"):
        add_store(db, store, (tmp_path / "k.pub").read_text())
    return db


def _stock(seq: int, sku: str, delta: int) -> Event:
    return Event(seq, f"e{seq}-{uuid.uuid4().hex[:6]}", "stock.adjusted", 1, seq << 16,
                 {"sku": sku, "location": "floor", "delta": delta, "reason": "count", "ref": None})  # fmt: skip


def _points(seq: int, member_id: str, delta: int) -> Event:
    return Event(seq, f"e{seq}-{uuid.uuid4().hex[:6]}", "points.entry", 1, seq << 16,
                 {"member_id": member_id, "delta": delta, "kind": "accrual", "ref": f"R{seq}"})  # fmt: skip


def _sale(seq: int, receipt_no: str, member_id: str, points: int) -> Event:
    return Event(seq, f"e{seq}-{uuid.uuid4().hex[:6]}", "sale.completed", 1, seq << 16, {
        "receipt_no": receipt_no, "kind": "sale", "at": "2026-09-21T10:15:00+09:00", "member_id": member_id,
        "total": 1_100, "rates": [{"rate": 10, "tax": 100}], "stock_movements": [],
        "points_entries": [{"member_id": member_id, "kind": "accrue", "points": points}], "points_earned": points,
        "points_redeemed": 0,
    })  # fmt: skip


def _events(first: int, count: int) -> list[Event]:
    """Stock moves of three SKUs, a points entry whose sale comes in the next batch (held across batches alone)."""
    out: list[Event] = []
    for seq in range(first, first + count):
        if seq % 10 == 5:
            out.append(_points(seq, f"M{seq % 3}", 5))
        elif seq % 10 == 6:
            out.append(_sale(seq, f"R{seq - 1}", f"M{(seq - 1) % 3}", 5))
        else:
            out.append(_stock(seq, f"SKU-{seq % 3}", seq % 7 - 3))
    return out


def _state(db: Central, store: str) -> dict[str, object]:
    """What a store's events left at HQ, as the monitor and the stores' feed see it."""
    return {
        "progress": db.one(
            "SELECT stream, last_applied_seq, events_applied, newest_event_hlc, dead_letters"
            " FROM stores WHERE store_id = ?",
            (store,),
        ),  # fmt: skip
        "events": db.all("SELECT seq, event_id FROM events WHERE store_id = ? ORDER BY seq", (store,)),
        "on_hand": db.all("SELECT sku, on_hand FROM stock_levels WHERE store_id = ? ORDER BY sku", (store,)),
        "ledger": db.scalar("SELECT count(*) FROM stock_ledger WHERE store_id = ?", (store,)),
        "sales": db.scalar("SELECT count(*) FROM sales WHERE store_id = ?", (store,)),
        # the feed says each level once per transaction: a group's stores get fewer entries, the same keys
        "feed": db.all("SELECT DISTINCT kind, key FROM changes WHERE key LIKE ? ORDER BY kind, key", (store + "/%",)),
    }


def _plain(acks: list[Ack]) -> list[tuple[int, bool, str | None]]:
    return [(ack.hwm, ack.gap, ack.error) for ack in acks]


def test_a_group_leaves_and_answers_what_each_batch_alone_does(central: Central) -> None:
    """The same deliveries (a window, a resent batch, one ahead of its turn, the missing one) to two stores: one
    store's in one group with a third store's, the other's one transaction each."""
    b1, b2, b3 = (EventBatch("s1", _events(first, 20), backlog=9) for first in (1, 21, 41))
    deliveries = [b1, b2, b1, b3, EventBatch("s1", _events(61, 20)[5:]), EventBatch("s1", _events(61, 20))]
    grouped = apply_batches(central, [Waiting("S001", b) for b in deliveries[:3]] + [Waiting("S003", b3)]
                            + [Waiting("S001", b) for b in deliveries[3:]])  # fmt: skip
    alone = [apply_batch(central, "S002", b) for b in deliveries]
    assert _plain(grouped[:3] + grouped[4:]) == _plain(alone)
    assert _plain(alone) == [(20, False, None), (40, False, None), (40, False, None), (60, False, None),
                             (60, True, None), (80, False, None)]  # fmt: skip
    assert grouped[3].hwm == 0 and grouped[3].gap, "S003's first batch starts at 41: it asks for the rest"
    mine, theirs = _state(central, "S001"), _state(central, "S002")
    assert mine["progress"] == theirs["progress"] and mine["events"] == theirs["events"]
    assert mine["on_hand"] == theirs["on_hand"] and mine["ledger"] == theirs["ledger"] == 64
    assert mine["sales"] == theirs["sales"] == 8
    assert mine["feed"] == [(kind, key.replace("S002", "S001")) for kind, key in theirs["feed"]]  # type: ignore[attr-defined]
    balances = {
        member: int(balance) for member, balance in central.all("SELECT member_id, balance FROM points_balances")
    }
    assert balances == {"M0": 2 * 15, "M1": 2 * 10, "M2": 2 * 15}  # both stores' accruals, each counted once


def test_an_unknown_store_in_a_group_is_answered_and_the_others_apply(central: Central) -> None:
    acks = apply_batches(central, [Waiting("S404", EventBatch("x", _events(1, 3))),
                                   Waiting("S001", EventBatch("s1", _events(1, 3)))])  # fmt: skip
    assert _plain(acks) == [(0, False, "unknown store"), (3, False, None)]
    assert int(central.scalar("SELECT last_applied_seq FROM stores WHERE store_id = 'S001'")) == 3


def test_a_failing_batch_fails_the_group_whole_and_alone_is_one_dead_letter(
    central: Central, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = EventBatch("s1", _events(1, 10))
    bad = EventBatch("s1", [_stock(1, "SKU-9", 1), _stock(2, "SKU-9", 2)])
    planner = apply.plan_event

    def plan_event(plan: Plan, origin: Origin, event: Event, now: float, decoded: Decoded | None = None) -> None:
        if event.id == bad.events[1].id:  # what an effect the database refuses does: not a payload error
            raise RuntimeError("the database refused it")
        planner(plan, origin, event, now, decoded)

    monkeypatch.setattr(apply, "plan_event", plan_event)
    with pytest.raises(RuntimeError):
        apply_batches(central, [Waiting("S001", good), Waiting("S002", bad)])
    assert int(central.scalar("SELECT count(*) FROM events")) == 0, "nothing of the group committed"
    assert int(central.scalar("SELECT sum(last_applied_seq) FROM stores")) == 0
    # what the aggregator then does: each alone, the bad event a dead letter, the rest applied
    assert [apply_batch(central, "S001", good).hwm, apply_batch(central, "S002", bad).hwm] == [10, 2]
    assert [int(seq) for (seq,) in central.all("SELECT event_seq FROM dead_letters")] == [2]
    assert int(central.scalar("SELECT on_hand FROM stock_levels WHERE store_id = 'S002' AND sku = 'SKU-9'")) == 1
    # and the connection takes the next group
    assert _plain(apply_batches(central, [Waiting("S001", EventBatch("s1", _events(11, 2)))] * 2)) == [
        (12, False, None), (12, False, None)]  # fmt: skip


def test_groups_hold_at_most_the_limit_and_a_larger_batch_alone() -> None:
    sizes = [3, 3, 3, 9, 1]
    waiting = [Waiting("S001", EventBatch("s1", _events(1, n))) for n in sizes]
    assert [[len(w.batch.events) for w in group] for group in groups(waiting, limit=6)] == [[3, 3], [3], [9], [1]]


def test_a_group_waiting_for_a_store_holds_nothing_that_stores_batch_needs(postgres_url: str, tmp_path: Path) -> None:
    """Deadlock-free: a group that waits for a store's row (another aggregator is applying that store's batch)
    has taken no lock that batch takes after its row, such as the change counter's."""
    import psycopg

    group_db, other = Central(postgres_url), psycopg.connect(postgres_url)
    crypto.generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    for store in ("S001", "S002"):
        add_store(group_db, store, (tmp_path / "k.pub").read_text())
    with other.transaction():
        other.execute("SELECT 1 FROM stores WHERE store_id = 'S002' FOR UPDATE")  # the other aggregator's batch
        waiting = [Waiting("S001", EventBatch("s1", _events(1, 5))), Waiting("S002", EventBatch("s1", _events(1, 5)))]
        result: list[list[Ack]] = []
        worker = threading.Thread(target=lambda: result.append(apply_batches(group_db, waiting)))
        worker.start()
        pid = group_db.conn.info.backend_pid
        wait_until(lambda: other.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                         (pid,)).fetchone() == ("Lock",), 10, what="the group waiting")  # fmt: skip
        # what that batch does next: its stock and feed take the change counter; the group must not hold it
        other.execute("SELECT value FROM counters WHERE name = 'change' FOR UPDATE NOWAIT")
    worker.join(10)
    assert _plain(result[0]) == [(5, False, None), (5, False, None)]
    group_db.close()
    other.close()


def test_the_aggregator_applies_its_waiting_batches_together_and_answers_each(central_url: str, tmp_path: Path) -> None:
    """What the aggregator does with the messages waiting in its queue: the batches in one transaction, each
    acknowledged to its store with its own mark; a message that fails its checks is a dead letter, and every
    message is acknowledged to the broker."""
    import paho.mqtt.client as mqtt

    from tenpo.cloud.aggregator import Aggregator
    from tenpo.shared.mqtt import parse_broker_url
    from tenpo.shared.protocol import Envelope, encode, up_topic

    db = Central(central_url)
    crypto.generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    crypto.generate_keypair(tmp_path / "other", tmp_path / "other.pub")
    key, other = crypto.load_private_key(tmp_path / "k"), crypto.load_private_key(tmp_path / "other")
    for store in ("S001", "S002"):
        add_store(db, store, (tmp_path / "k.pub").read_text())

    def message(mid: int, store: str, batch: EventBatch, signer: crypto.Ed25519PrivateKey = key) -> mqtt.MQTTMessage:
        body = encode(batch)
        msg = mqtt.MQTTMessage(mid, up_topic(store, "events").encode())
        msg.payload = encode(Envelope(1, store, "events", body.decode(), crypto.sign(signer, body)))
        return msg

    aggregator = Aggregator(central_url, parse_broker_url("mqtt://127.0.0.1:1"))
    acked, answers = [], []
    aggregator.client.ack = lambda mid, qos: acked.append(mid)  # type: ignore[method-assign]
    aggregator.out.publish = lambda topic, payload, qos: answers.append((topic, json.loads(payload)))  # type: ignore[method-assign]
    waiting = [message(1, "S001", EventBatch("s1", _events(1, 4))), message(2, "S002", EventBatch("s1", _events(1, 3))),
               message(3, "S001", EventBatch("s1", _events(5, 4)), signer=other),
               message(4, "S001", EventBatch("s1", _events(5, 4)))]  # fmt: skip
    aggregator._handle_waiting(waiting, threading.Event())
    assert sorted(acked) == [1, 2, 3, 4]
    assert [(topic.split("/")[3], answer["hwm"]) for topic, answer in answers] == [
        ("S001", 4),
        ("S002", 3),
        ("S001", 8),
    ]
    assert [reason for (reason,) in db.all("SELECT reason FROM dead_letters")] == ["bad signature"]
    assert dict(db.all("SELECT store_id, last_applied_seq FROM stores")) == {"S001": 8, "S002": 3}
    aggregator.db.close()
    aggregator.channel.desk.db.close()
    db.close()
