"""HQ turns the stores' beacon events into visits, zone stays and coupons (SQLite and PostgreSQL).

The events are made by the store's own writer (tenpo.edge.ble.store) from presence events, so the
contract between the two sides is tested as it is used.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tenpo.cloud.apply import apply_batch
from tenpo.cloud.db import Central
from tenpo.cloud.visits.history import erase_member_visits, member_visits
from tenpo.edge import db as edge_db
from tenpo.edge.ble.presence import CouponTriggered, MemberArrived, MemberLeft, Subject, ZoneEntered, ZoneLeft
from tenpo.edge.ble.store import PresenceWriter
from tenpo.edge.outbox import pending
from tenpo.shared.protocol import Event, EventBatch
from tests.support.stores import central_with_s001


@pytest.fixture
def central(central_url: str, tmp_path: Path):
    yield from central_with_s001(central_url, tmp_path)


@pytest.fixture
def store(tmp_path: Path):
    db = edge_db.connect(tmp_path / "store.db")
    yield db
    db.conn.close()


class Store:
    """The store side: presence events in, outbox events out, batches to HQ."""

    def __init__(self, db, central: Central) -> None:
        self.db, self.central, self.writer, self.sent = db, central, PresenceWriter("S001"), 0

    def happen(self, *events) -> None:
        with edge_db.transaction(self.db) as conn:
            self.writer.write(conn, "scan", list(events))

    def send(self) -> list[Event]:
        batch = pending(self.db.conn, self.sent, 1000)
        apply_batch(self.central, "S001", EventBatch("stream-1", batch))
        self.sent = batch[-1].seq
        return batch


def test_a_visit_with_zone_and_coupon_becomes_member_history(store, central: Central) -> None:
    side = Store(store, central)
    t = time.time() - 3600
    hanako = Subject("member", "M1")
    side.happen(MemberArrived("M1", t), CouponTriggered("M1", "welcome-back-30d", t), ZoneEntered("fitting-room", hanako, t + 30))
    side.send()
    [visit] = member_visits(central, "M1")
    assert (visit.store_id, visit.store_name, visit.left_at, visit.coupons) == ("S001", "Shibuya", None, ("welcome-back-30d",))

    side.happen(ZoneLeft("fitting-room", hanako, t + 400, 370.0), MemberLeft("M1", t + 600, 600.0))
    side.send()
    [visit] = member_visits(central, "M1")
    assert (visit.arrived_at, visit.left_at, visit.dwell_s, visit.interrupted) == (t, t + 600, 600.0, False)
    zone = central.one("SELECT zone, subject_kind, member_id, dwell_s FROM zone_stays WHERE store_id = 'S001'")
    assert tuple(zone) == ("fitting-room", "member", "M1", 370.0)
    assert central.scalar("SELECT count(*) FROM dead_letters") == 0


def test_statement_order_within_a_batch_does_not_matter(store, central: Central) -> None:
    side = Store(store, central)
    t = time.time() - 7200
    side.happen(MemberArrived("M1", t))
    side.send()
    # One batch that starts with a departure (so its upsert runs first) and then a whole visit.
    side.happen(MemberLeft("M1", t + 100, 100.0), MemberArrived("M2", t + 200), MemberLeft("M2", t + 260, 60.0))
    side.send()
    assert [(v.member_id, v.dwell_s) for v in member_visits(central, "M1", also=["M2"])] == [("M2", 60.0), ("M1", 100.0)]
    assert central.scalar("SELECT count(*) FROM visits") == 2


def bad(seq: int, event_type: str, payload: dict) -> Event:
    return Event(seq, uuid.uuid4().hex, event_type, 1, seq, payload)


def test_bad_payloads_are_dead_lettered_naming_the_field_and_the_rest_applies(central: Central) -> None:
    t = time.time()
    good_left = {"visit_id": "v1", "member_id": "M1", "arrived_at": t - 60, "left_at": t, "dwell_s": 60.0,
                 "interrupted": False, "store": "S001"}  # fmt: skip
    events = [
        bad(1, "visit.arrived", {"visit_id": "v0", "arrived_at": t, "store": "S001"}),
        bad(2, "visit.left", {**good_left, "dwell_s": 5000.0}),
        bad(3, "visit.left", {**good_left, "store": "S002"}),
        bad(4, "visit.arrived", {"visit_id": "v2", "member_id": "M1", "arrived_at": True}),
        bad(5, "zone.entered", {"stay_id": "z1", "zone": "counter", "subject_kind": "phone", "subject_id": "x",
                                "entered_at": t}),  # fmt: skip
        bad(6, "coupon.triggered", {"coupon_id": "c1", "member_id": "M1", "rule": "r", "triggered_at": 12.0}),
        bad(7, "visit.left", good_left),
    ]
    ack = apply_batch(central, "S001", EventBatch("stream-1", events))
    assert ack.hwm == 7, "bad events do not hold the stream back"
    reasons = [r[0] for r in central.all("SELECT reason FROM dead_letters ORDER BY event_seq")]
    for reason, field in zip(reasons, ("member_id", "dwell_s", "store", "arrived_at", "subject_kind", "triggered_at")):
        assert f": {field}:" in reason, reason
    assert len(reasons) == 6
    assert [(v.visit_id, v.dwell_s) for v in member_visits(central, "M1")] == [("v1", 60.0)]


def test_erasure_removes_the_location_history(store, central: Central) -> None:
    side = Store(store, central)
    t = time.time() - 60
    side.happen(MemberArrived("M1", t), CouponTriggered("M1", "welcome-back-30d", t), MemberLeft("M1", t + 30, 30.0))
    side.send()
    with central.transaction():
        assert erase_member_visits(central, "M1") == 2
    assert member_visits(central, "M1") == []
