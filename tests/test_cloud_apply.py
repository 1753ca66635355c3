"""HQ applies each event exactly once in effect, and dead-letters what it cannot apply (both dialects)."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import pytest

from tenpo.cloud.admin import add_store
from tenpo.cloud.aggregator import Aggregator
from tenpo.cloud.apply import KeyRing, Rejected, apply_batch, open_envelope
from tenpo.cloud.db import Central
from tenpo.cloud.feed import changes_after
from tenpo.shared import crypto
from tenpo.shared.mqtt import parse_broker_url
from tenpo.shared.protocol import Envelope, Event, EventBatch, encode, up_topic


@pytest.fixture
def store_key(tmp_path: Path) -> crypto.Ed25519PrivateKey:
    crypto.generate_keypair(tmp_path / "S001.key", tmp_path / "S001.pub")
    return crypto.load_private_key(tmp_path / "S001.key")


@pytest.fixture
def central(central_url: str, store_key: crypto.Ed25519PrivateKey) -> Central:
    db = Central(central_url)
    add_store(db, "S001", crypto.public_key_pem(store_key), "Shibuya")
    yield db
    db.close()


def stock_event(seq: int, delta: int = 1, sku: str = "A1") -> Event:
    return Event(seq, uuid.uuid4().hex, "stock.adjusted", 1, seq << 16,
                 {"sku": sku, "delta": delta, "reason": "count", "location": "floor"})  # fmt: skip


def sale_event(seq: int, receipt_no: str, member_id: str, total: int, points: int) -> Event:
    """The sale a store writes right after its points entries: what HQ's authority rules link them to."""
    return Event(seq, uuid.uuid4().hex, "sale.completed", 1, seq << 16, {
        "receipt_no": receipt_no, "kind": "sale", "at": "2026-09-21T10:15:00+09:00", "member_id": member_id,
        "total": total, "rates": [{"rate": 10, "tax": total // 11}], "stock_movements": [],
        "points_entries": [{"member_id": member_id, "kind": "accrue", "points": points}], "points_earned": points,
        "points_redeemed": 0,
    })  # fmt: skip


def on_hand(db: Central, sku: str = "A1") -> int:
    return int(db.scalar("SELECT coalesce(sum(delta), 0) FROM stock_ledger WHERE store_id = 'S001' AND sku = ?", (sku,), 0))


def test_duplicated_and_reordered_batches_apply_once(central: Central) -> None:
    events = [stock_event(seq, delta=seq) for seq in range(1, 101)]
    batches = [EventBatch("stream-1", events[i : i + 10]) for i in range(0, 100, 10)]
    deliveries = batches * 3  # every batch three times
    random.Random(7).shuffle(deliveries)
    hwm = 0
    pure_duplicates = 0
    for batch in deliveries:
        ack = apply_batch(central, "S001", batch)
        if batch.events[-1].seq <= hwm:  # HQ holds all of it: acknowledged as it stands, no resend asked
            assert (ack.hwm, ack.gap) == (hwm, False), f"duplicate of {batch.events[0].seq}..{batch.events[-1].seq}"
            pure_duplicates += 1
        hwm = max(hwm, ack.hwm)
    assert pure_duplicates > 0, "the shuffle delivered batches HQ already held"
    resends = 0
    while hwm < 100:  # what the store does after an ack with a gap: resend from the mark, oldest first
        hwm = apply_batch(central, "S001", EventBatch("stream-1", events[hwm : hwm + 10])).hwm
        resends += 1
    assert resends < 10
    assert central.scalar("SELECT last_applied_seq FROM stores WHERE store_id = 'S001'") == 100
    assert central.scalar("SELECT count(*) FROM events WHERE store_id = 'S001'") == 100
    assert on_hand(central) == sum(range(1, 101))
    seqs = [row[0] for row in central.all("SELECT store_seq FROM stock_ledger ORDER BY id")]
    assert seqs == list(range(1, 101)), "effects are applied in the store's order"


def test_gap_is_acknowledged_with_the_mark_to_resend_from(central: Central) -> None:
    apply_batch(central, "S001", EventBatch("s", [stock_event(1), stock_event(2)]))
    ack = apply_batch(central, "S001", EventBatch("s", [stock_event(5), stock_event(6)]))
    assert (ack.hwm, ack.gap) == (2, True)
    assert on_hand(central) == 2


def test_bad_event_payload_is_dead_lettered_and_the_stream_moves_on(central: Central) -> None:
    bad = Event(2, "x", "stock.adjusted", 1, 0, {"sku": "A1", "delta": "lots", "reason": "count"})
    unknown = Event(3, "y", "teleport.item", 1, 0, {})
    ack = apply_batch(central, "S001", EventBatch("s", [stock_event(1), bad, unknown, stock_event(4)]))
    assert ack.hwm == 4
    reasons = [row[0] for row in central.all("SELECT reason FROM dead_letters ORDER BY id")]
    assert reasons == ["event 2 (stock.adjusted): delta: expected int, got str",
                       "event 3 (teleport.item): unknown event type 'teleport.item'"]  # fmt: skip
    assert on_hand(central) == 2
    assert central.scalar("SELECT dead_letters FROM stores WHERE store_id = 'S001'") == 2


def test_a_replaced_store_database_starts_a_new_stream(central: Central) -> None:
    apply_batch(central, "S001", EventBatch("old", [stock_event(1), stock_event(2)]))
    late_old = apply_batch(central, "S001", EventBatch("new", [stock_event(3)]))
    assert late_old.gap and late_old.hwm == 0, "a new stream must start at seq 1"
    ack = apply_batch(central, "S001", EventBatch("new", [stock_event(1), stock_event(2)]))
    assert ack.hwm == 2
    assert on_hand(central) == 4


def test_a_reused_sequence_number_is_reported(central: Central) -> None:
    apply_batch(central, "S001", EventBatch("s", [stock_event(1)]))
    apply_batch(central, "S001", EventBatch("s", [stock_event(1, delta=9)]))  # same seq, different event
    assert "sequence number reused" in central.scalar("SELECT reason FROM dead_letters")
    assert on_hand(central) == 1


def test_members_and_stock_flow_into_the_change_feed(central: Central) -> None:
    member = {"member_id": "S001-abc", "name": "佐藤 花子", "kana": "サトウハナコ", "phone": "+819012345678"}
    apply_batch(central, "S001", EventBatch("s", [
        Event(1, "e1", "member.registered", 1, 0, member),
        stock_event(2, delta=5),
        Event(3, "e3", "points.entry", 1, 0, {"member_id": "S001-abc", "delta": 120, "kind": "accrual", "ref": "R1"}),
        sale_event(4, "R1", "S001-abc", 12_000, 120),  # the sale behind the points (docs/authority.md)
    ]))  # fmt: skip
    page = changes_after(central, 0, 100, "S002")
    kinds = {c.kind: c.data for c in page.changes}
    assert kinds["member.upsert"]["name"] == "佐藤 花子"
    assert kinds["stock.level"] == {**kinds["stock.level"], "store_id": "S001", "sku": "A1", "on_hand": 5}
    assert kinds["points.balance"] == {"member_id": "S001-abc", "balance": 120, "through": {"S001": 4}}
    assert page.to_seq == page.latest


# ---------------------------------------------------------------------------- envelopes


def envelope(key: crypto.Ed25519PrivateKey, body: bytes, store: str = "S001", kind: str = "events", v: int = 1) -> bytes:
    return encode(Envelope(v, store, kind, body.decode(), crypto.sign(key, body)))


def good_body() -> bytes:
    return encode(EventBatch("s", [stock_event(1)]))


def bad_payloads(key: crypto.Ed25519PrivateKey, tmp_path: Path) -> dict[str, tuple[str, bytes]]:
    crypto.generate_keypair(tmp_path / "other.key", tmp_path / "other.pub")
    other = crypto.load_private_key(tmp_path / "other.key")
    body = good_body()
    signed = json.loads(envelope(key, body))
    return {
        "invalid JSON": (up_topic("S001", "events"), b'{"v": 1, "store": "S001", "bo'),
        "wrong schema version": (up_topic("S001", "events"), envelope(key, body, v=7)),
        "missing signature": (up_topic("S001", "events"), json.dumps({k: v for k, v in signed.items() if k != "sig"}).encode()),
        "bad signature": (up_topic("S001", "events"), envelope(other, body)),
        "unknown store": (up_topic("S999", "events"), envelope(key, body, store="S999")),
        "store differs from topic": (up_topic("S001", "events"), envelope(key, body, store="S002")),
        "oversized": (up_topic("S001", "events"), b"{" + b" " * 1_100_000 + b"}"),
        "body schema": (up_topic("S001", "events"), envelope(key, b'{"stream": 5, "events": "none"}')),
    }


EXPECTED_REASONS = {
    "invalid JSON": "envelope invalid JSON",
    "wrong schema version": "unsupported protocol version 7",
    "missing signature": "envelope schema: Object missing required field `sig`",
    "bad signature": "bad signature",
    "unknown store": "unknown store 'S999' (not registered)",
    "store differs from topic": "store id 'S002' differs from the topic's 'S001'",
    "oversized": "oversized",
    "body schema": "events body schema",
}


def test_every_kind_of_bad_envelope_is_rejected_with_its_reason(central: Central, store_key, tmp_path: Path) -> None:
    keys = KeyRing(central)
    for name, (topic, payload) in bad_payloads(store_key, tmp_path).items():
        with pytest.raises(Rejected) as caught:
            open_envelope(topic, payload, keys)
        assert caught.value.reason.startswith(EXPECTED_REASONS[name]), (name, caught.value.reason)
    opened = open_envelope(up_topic("S001", "events"), envelope(store_key, good_body()), keys)
    assert opened.store_id == "S001" and opened.body.events[0].seq == 1


def test_aggregator_dead_letters_bad_payloads_and_keeps_serving(broker, central_url, store_key, tmp_path) -> None:
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    db = Central(central_url)
    add_store(db, "S001", crypto.public_key_pem(store_key))
    aggregator = Aggregator(central_url, parse_broker_url(broker.url))
    stop = threading.Event()
    thread = threading.Thread(target=aggregator.run, args=(stop,), daemon=True)
    thread.start()
    assert aggregator.connected.wait(10)
    acks: list[bytes] = []
    got_ack = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: (acks.append(m.payload), got_ack.set())
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.subscribe("tenpo/v1/stores/S001/down/ack", qos=1)
    payloads = bad_payloads(store_key, tmp_path)
    for topic, payload in payloads.values():
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    from tenpo.sandbox import wait_until

    wait_until(lambda: db.scalar("SELECT count(*) FROM dead_letters") == len(payloads), 15, what="dead letters")
    # Still serving: a good batch after all that is applied and acknowledged.
    client.publish(up_topic("S001", "events"), envelope(store_key, good_body()), qos=1)
    assert got_ack.wait(10)
    assert json.loads(acks[-1])["hwm"] == 1
    assert thread.is_alive()
    stop.set()
    thread.join(10)
    client.loop_stop()
    db.close()


def test_balances_and_on_hand_follow_every_ledger_write(central: Central) -> None:
    """Conflict resolution, imports and merges write the ledgers too; the derived figures must follow."""
    apply_batch(central, "S001", EventBatch("s", [
        Event(1, "p1", "points.entry", 1, 0, {"member_id": "M1", "delta": 100, "kind": "accrual", "ref": "R1"}),
        sale_event(2, "R1", "M1", 10_000, 100),
        Event(3, "p2", "points.entry", 1, 0, {"member_id": "M2", "delta": 40, "kind": "accrual", "ref": "R2"}),
        sale_event(4, "R2", "M2", 4_000, 40),
        stock_event(5, delta=7), stock_event(6, delta=-2),
    ]))  # fmt: skip
    with central.transaction():
        central.execute("UPDATE points_ledger SET member_id = 'M1' WHERE member_id = 'M2'")  # a merge re-points
        central.execute("INSERT INTO stock_ledger(store_id, stream, sku, location, delta, reason, store_seq, created_at)"
                        " VALUES ('S001', 'hq', 'A1', 'floor', -5, 'conflict write-off', 0, 0)")  # fmt: skip
    balances = dict(central.all("SELECT member_id, balance FROM points_balances"))
    sums = dict(central.all("SELECT member_id, sum(delta) FROM points_ledger GROUP BY member_id"))
    assert {k: v for k, v in balances.items() if v} == {k: int(v) for k, v in sums.items()} == {"M1": 140}
    assert on_hand(central) == 0 == central.scalar("SELECT on_hand FROM stock_levels WHERE sku = 'A1'")
