"""The one catalogue of event types and change kinds (shared/events.py, shared/changes.py): the store
writes from it, HQ decodes with it, docs/protocol.md lists it, and each ledger has one writer."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tenpo.cloud.apply import apply_batch
from tenpo.cloud.changes import record_changes
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge import feed, replica
from tenpo.edge.ble.presence import MemberArrived, MemberLeft
from tenpo.edge.ble.store import PresenceWriter
from tenpo.edge.checkout.model import Payment, Scan, sale_to_json
from tenpo.edge.checkout.store import SaleOrder, commit_sale, refund_sale
from tenpo.edge.clerk import records
from tenpo.edge.config import load_config
from tenpo.edge.outbox import pending
from tenpo.shared.changes import CHANGE_KINDS, PayloadMismatch, decode_change
from tenpo.shared.events import EVENT_TYPES, SaleCompleted, decode_payload
from tenpo.shared.protocol import Change, ChangePage, Event, EventBatch
from tests.support.stores import central_with_s001
from tests.test_clerk_support import ONIGIRI, TEA, make_store

PROTOCOL_MD = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC


# ---------------------------------------------------------------------------- the document


def _first_column(section: str) -> set[str]:
    """Every `name` in the first column of the markdown table that follows ``section``'s first line."""
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    start = text.index(section)
    names: set[str] = set()
    in_table = False
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            in_table = True
            first = line.split("|")[1]
            names |= set(re.findall(r"`([a-z_]+\.[a-z_]+)`", first))
        elif in_table:
            break
    return names


def test_protocol_md_lists_exactly_the_event_types_of_the_catalogue() -> None:
    documented = _first_column("Event types (schema 1)")
    assert documented - EVENT_TYPES == set(), "documented but not in shared/events.py"
    assert EVENT_TYPES - documented == set(), "in shared/events.py but not documented"


def test_protocol_md_lists_exactly_the_change_kinds_of_the_catalogue() -> None:
    documented = _first_column("| kind | data |")
    assert documented - set(CHANGE_KINDS) == set(), "documented but not in shared/changes.py"
    assert set(CHANGE_KINDS) - documented == set(), "in shared/changes.py but not documented"


# ---------------------------------------------------------------------------- ranges, named fields


@pytest.mark.parametrize(
    "event_type, payload, message",
    [("stock.moved", {"sku": "A1", "delta": 2**64, "reason": "sale"}, "delta: expected int <= 1000000000"),
     ("points.entry", {"member_id": "M1", "delta": -(2**70), "kind": "accrual"}, "delta: expected int >= "),
     ("points.entry", {"member_id": "M1", "delta": 5, "kind": "gift"}, "kind: invalid enum value 'gift'"),
     ("stock.moved", {"sku": "x" * 129, "delta": 1, "reason": "sale"}, "sku: expected str of length <= 128"),
     ("stock.moved", {"delta": 1, "reason": "sale"}, "sku: missing"),
     ("visit.arrived", {"visit_id": "v", "member_id": "M1", "arrived_at": float("nan")}, "arrived_at: expected float"),
     ("sale.completed", {"receipt_no": "R1", "kind": "sale", "at": "2026-01-01T09:00:00+09:00", "total": 100,
                         "rates": [{"rate": 10, "tax": 2**63}], "points_earned": 0, "points_redeemed": 0,
                         "stock_movements": [], "points_entries": []}, "rates[0].tax: expected int <= ")],
)  # fmt: skip
def test_a_payload_out_of_range_is_refused_naming_the_field(event_type: str, payload: dict, message: str) -> None:
    with pytest.raises(PayloadMismatch) as caught:
        decode_payload(event_type, 1, payload)
    assert str(caught.value).startswith(message)


@pytest.fixture
def central(central_url: str, tmp_path: Path) -> Central:
    yield from central_with_s001(central_url, tmp_path)


def test_a_quantity_beyond_64_bits_is_dead_lettered_alone_and_the_rest_of_the_batch_applies(central: Central) -> None:
    def moved(seq: int, delta: int) -> Event:
        return Event(seq, f"e{seq}", "stock.moved", 1, seq, {"sku": "A1", "delta": delta, "reason": "receipt"})

    ack = apply_batch(central, "S001", EventBatch("s", [moved(1, 5), moved(2, 2**64), moved(3, -2)]))
    assert (ack.hwm, ack.gap, ack.error) == (3, False, None)
    assert central.all("SELECT reason, event_seq FROM dead_letters") == [
        ("event 2 (stock.moved): delta: expected int <= 1000000000", 2)]  # fmt: skip
    assert central.scalar("SELECT sum(delta) FROM stock_ledger WHERE store_id = 'S001'") == 3


# ---------------------------------------------------------------------------- what stores wrote before


def _payloads_as_written_before_the_catalogue() -> list[tuple[str, dict]]:
    """Payloads in exactly the shape the store code wrote them before the catalogue existed: events
    still waiting in an outbox across the upgrade must apply."""
    sale = {"receipt_no": "S001-000001", "kind": "sale", "refund_of": None, "tax_rounding": "floor",
            "at": "2026-01-01T09:00:00+09:00", "prices_include_tax": True, "member_id": "S001-0001",
            "lines": [{"sku": "TEA-500", "gtin": "04901085089583", "name": "緑茶", "qty": 2, "unit_price": 150,
                       "tax_class": "reduced", "rate": 8, "discount": 0, "total": 300, "serial": None, "code": TEA,
                       "of_line": None}],
            "subtotal": 300, "receipt_discounts": [], "tax_by_rate": {"8": {"taxable": 300, "tax": 22}},
            "rates": [{"rate": 8, "lines": 300, "discount": 0, "taxable": 300, "tax": 22}], "total": 300,
            "payments": [{"tender": "cash", "amount": 500}], "change": 200, "points_earned": 3, "points_redeemed": 0,
            "points_balance_after": 3, "stock_movements": [{"sku": "TEA-500", "qty": -2, "serial": None}],
            "points_entries": [{"member_id": "S001-0001", "kind": "accrue", "points": 3}], "feed_cursor": 0}
    refund = {**sale, "receipt_no": "S001-000002", "kind": "refund", "refund_of": "S001-000001", "total": -300,
              "stock_movements": [{"sku": "TEA-500", "qty": 2, "serial": None}],
              "points_entries": [{"member_id": "S001-0001", "kind": "accrue-reversal", "points": -3}],
              "points_earned": -3}
    return [
        ("member.registered", {"member_id": "S001-0001", "name": "佐藤 花子", "kana": None, "phone": "+819012345678",
                               "email": None, "card_no": "C9", "line_user_id": None, "consent": {}, "custom": {},
                               "home_store": "S001"}),
        ("stock.adjusted", {"sku": "TEA-500", "location": "floor", "delta": 10, "reason": "count", "ref": None}),
        ("stock.moved", {"sku": "TEA-500", "delta": -2, "reason": "sale", "location": "floor", "ref": "S001-000001"}),
        ("points.entry", {"member_id": "S001-0001", "delta": 3, "kind": "accrual", "ref": "S001-000001"}),
        ("sale.completed", sale),
        ("sale.refunded", refund),
        ("inspection.completed", {"inspection_id": "I1", "shipment_id": None, "status": "held",
                                  "summary": {"matched": 0, "received_posted": 0}, "at": NOW, "by": None}),
        ("visit.arrived", {"visit_id": "v1", "member_id": "S001-0001", "arrived_at": NOW, "store": "S001"}),
        ("zone.entered", {"stay_id": "z1", "zone": "shoes", "subject_kind": "beacon", "subject_id": "b1",
                          "member_id": None, "entered_at": NOW, "store": "S001"}),
        ("zone.left", {"stay_id": "z1", "zone": "shoes", "subject_kind": "beacon", "subject_id": "b1",
                       "member_id": None, "entered_at": NOW, "left_at": NOW + 30, "dwell_s": 30.0, "store": "S001"}),
        ("coupon.triggered", {"coupon_id": "c1", "member_id": "S001-0001", "rule": "welcome", "visit_id": "v1",
                              "triggered_at": NOW + 5, "store": "S001"}),
        ("visit.left", {"visit_id": "v1", "member_id": "S001-0001", "arrived_at": NOW, "left_at": NOW + 60,
                        "dwell_s": 60.0, "interrupted": False, "store": "S001"}),
        ("member.viewed", {"clerk_id": "1001", "member_id": "S001-0001", "action": "view", "at": NOW}),
        ("reservation.requested", {"reservation_id": "S001-P000001", "sku": "TEA-500", "qty": 1, "from_store": "S002",
                                   "pickup_store": "S001", "member_id": None, "customer": "山田", "clerk_id": "1001",
                                   "at": NOW}),
    ]  # fmt: skip


def test_events_written_before_the_catalogue_still_apply_at_hq(central: Central) -> None:
    old = _payloads_as_written_before_the_catalogue()
    # No store writes member.updated yet; stock.snapshot was born after the catalogue (edge/scheduler.py).
    born_later = {"reservation.confirmed", "reservation.rejected", "reservation.ready", "reservation.picked_up",
                  "transfer.shipped", "reservation.shipped", "reservation.arrived",
                  "delivery.requested"}  # issue 18
    assert {t for t, _ in old} == EVENT_TYPES - {"member.updated", "stock.snapshot"} - born_later
    events = [Event(n, f"e{n}", t, 1, n, p) for n, (t, p) in enumerate(old, start=1)]
    assert apply_batch(central, "S001", EventBatch("s", events)).hwm == len(events)
    assert central.all("SELECT reason FROM dead_letters") == []
    assert central.scalar("SELECT count(*) FROM sales") == 2
    assert central.scalar("SELECT on_hand FROM stock_levels WHERE store_id = 'S001' AND sku = 'TEA-500'") == 8


# ---------------------------------------------------------------------------- the store's writers


def test_every_field_of_a_sale_reaches_hq(tmp_path: Path) -> None:
    """The sale event is built through its Struct: a field sale_to_json adds must be in the Struct too,
    or the outbox would silently drop it."""
    config = make_store(tmp_path)
    db = edge_db.connect(config.database)
    sale = commit_sale(db, config, SaleOrder((Scan(TEA),), member_id="M-0001", payments=(Payment("cash", 1000),)))
    assert set(sale_to_json(sale)) <= set(SaleCompleted.__struct_fields__)
    (payload,) = [e.payload for e in pending(db.conn, 0, 100) if e.type == "sale.completed"]
    assert payload == {**sale_to_json(sale), "feed_cursor": 0}


def _store_with_history(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A store after a day of everything: registration, adjustment, sale with points, refund, clerk
    audit and reservation, a visit."""
    config = make_store(tmp_path)
    db = edge_db.connect(load_config(str(tmp_path / "S001.toml")).database)
    member_id = replica.register_member(db, "S001", name="高橋 健", phone="090-5555-1234")
    replica.adjust_stock(db, "ONIGIRI-S", 12, "count")
    at = datetime(2026, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=9)))
    sale = commit_sale(db, config, SaleOrder((Scan(TEA), Scan(TEA), Scan(ONIGIRI)), member_id="M-0001",
                                             redeem_points=100, payments=(Payment("cash", 1000),)), at=at)  # fmt: skip
    refund_sale(db, config, sale.receipt_no, lines={1: 1}, at=at + timedelta(hours=1))
    records.record_member_access(db, "1001", "M-0001", "export", now=NOW)
    records.request_reservation(db, "S001", "1001", sku="UMBRELLA", qty=1, from_store="S002", member_id=member_id)
    writer = PresenceWriter("S001")
    with edge_db.transaction(db) as conn:
        writer.write(conn, "scan", [MemberArrived("M-0001", NOW), MemberLeft("M-0001", NOW + 90, 90.0)])
    return db


def test_each_ledger_row_has_exactly_its_event(tmp_path: Path) -> None:
    db = _store_with_history(tmp_path)
    events = {e.seq: e for e in pending(db.conn, 0, 1000)}
    stock = db.conn.execute("SELECT store_seq, sku, delta, reason FROM stock_ledger ORDER BY id").fetchall()
    points = db.conn.execute("SELECT store_seq, member_id, delta, kind FROM points_ledger ORDER BY id").fetchall()
    assert stock and points
    assert sorted(seq for seq, *_ in stock) == sorted(s for s, e in events.items() if e.type.startswith("stock."))
    assert sorted(seq for seq, *_ in points) == sorted(s for s, e in events.items() if e.type == "points.entry")
    for seq, sku, delta, reason in stock:
        assert (events[seq].payload["sku"], events[seq].payload["delta"], events[seq].payload["reason"]) == (
            sku, delta, reason)  # fmt: skip
    for seq, member_id, delta, kind in points:
        assert (events[seq].payload["member_id"], events[seq].payload["delta"], events[seq].payload["kind"]) == (
            member_id, delta, kind)  # fmt: skip


def test_everything_a_store_writes_fits_the_catalogue_and_applies_at_hq(tmp_path: Path, central: Central) -> None:
    db = _store_with_history(tmp_path)
    events = pending(db.conn, 0, 1000)
    kinds = {e.type for e in events}
    assert kinds >= {"member.registered", "stock.adjusted", "stock.moved", "points.entry", "sale.completed",
                     "sale.refunded", "member.viewed", "reservation.requested", "visit.arrived", "visit.left"}
    for event in events:
        decode_payload(event.type, event.schema, event.payload)
    assert apply_batch(central, "S001", EventBatch("s", events)).hwm == events[-1].seq
    assert central.all("SELECT reason FROM dead_letters") == []
    here = dict(db.conn.execute("SELECT sku, sum(delta) FROM stock_ledger GROUP BY sku").fetchall())
    at_hq = dict(central.all("SELECT sku, on_hand FROM stock_levels WHERE store_id = 'S001'"))
    assert at_hq == here


def test_a_long_reason_typed_at_the_store_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    from tenpo.shared.errors import UserError

    config = make_store(tmp_path)
    db = edge_db.connect(config.database)
    with pytest.raises(UserError, match=r"^stock.adjusted: reason: expected str of length <= 256$"):
        replica.adjust_stock(db, "TEA-500", 1, "x" * 300)
    assert db.conn.execute("SELECT count(*) FROM stock_ledger").fetchone()[0] == 0
    assert pending(db.conn, 0, 10) == []


# ---------------------------------------------------------------------------- change kinds


def test_hq_refuses_to_record_a_change_that_does_not_fit_its_kind(central: Central) -> None:
    with pytest.raises(PayloadMismatch, match="^price: expected int <= "), central.transaction():
        record_changes(central, [("product.upsert", "A1", None, {"sku": "A1", "name": "x", "price": 2**64,
                                                                 "tax_class": "standard", "version": 0})], NOW)  # fmt: skip
    assert central.scalar("SELECT count(*) FROM changes") == 0


def test_a_store_dead_letters_a_change_that_does_not_fit_and_applies_the_rest_of_the_page(tmp_path: Path) -> None:
    config = make_store(tmp_path)
    db = edge_db.connect(config.database)
    good = {"sku": "NEW-1", "jan": None, "name": "新商品", "price": 300, "tax_class": "standard", "version": 0}
    page = ChangePage(0, 3, 3, [
        Change(1, "product.upsert", "BAD", {**good, "sku": "BAD", "price": 2**64}),
        Change(2, "points.balance", "M-0001", {"member_id": "M-0001", "balance": "lots"}),
        Change(3, "product.upsert", "NEW-1", good),
    ])  # fmt: skip
    result = feed.apply_page(db, "S001", page)
    assert (result.applied, result.cursor) == (3, 3)
    assert db.conn.execute("SELECT sku, price FROM products WHERE sku IN ('BAD', 'NEW-1')").fetchall() == [("NEW-1", 300)]
    reasons = [r for (r,) in db.conn.execute("SELECT reason FROM dead_letters ORDER BY id")]
    assert reasons == ["product.upsert: price: expected int <= 10000000000000",
                       "points.balance: balance: expected int, got str"]  # fmt: skip


def test_every_change_kind_decodes_the_data_hq_sends() -> None:
    samples = {
        "product.upsert": {"sku": "A1", "jan": "4901085089583", "name": "茶", "price": 150, "tax_class": "reduced",
                           "version": 4},
        "member.upsert": {"member_id": "G1", "name": "佐藤", "kana": None, "phone": None, "email": None, "card_no": None,
                          "line_user_id": None, "beacon_secret": "ab" * 16, "consent": {}, "custom": {},
                          "home_store": "S001", "version": 5},
        "member.erase": {"member_id": "G1", "version": 6},
        "points.balance": {"member_id": "G1", "balance": 10, "through": {"S001": 4, "channel:web": 2}},
        "stock.level": {"store_id": "S002", "sku": "A1", "on_hand": 3, "as_of": NOW, "version": 7},
        "stock.correction": {"store_id": "S001", "sku": "A1", "delta": 2, "reason": "hq-adjustment",
                             "ref": "conflict:1", "entry_id": 9},
        "member.merge": {"winner": "G1", "losers": ["S001-x"], "merge_id": 3},
        "member.unmerge": {"winner": "G1", "loser": "S001-x", "merge_id": 3},
        "asn.upsert": {"shipment_id": "SH1", "store": "S001", "lines": [{"gtin": "04901085089583", "qty": 6}],
                       "status": "open", "version": 8},
        "asn.closed": {"shipment_id": "SH1", "status": "received", "version": 9},
        "purchase.recorded": {"purchase_id": "web:W1", "member_id": "G1", "channel": "web", "ref": "W1",
                              "kind": "order", "at": "2026-01-01", "total": 1200, "points": 12, "version": 10},
        "member.rules": {"required": ["name", "phone"], "mobile_only": True, "contact_any_of": [],
                         "consent_text": "お知らせをメールで受け取ります", "version": 11},
        "member.loyalty": {"member_id": "G1", "rank": "ゴールド", "multiplier_pct": 200, "spend": 120000,  # issue 17
                           "as_of": "2026-11-30", "expiry_months": 12, "lots": [{"expires_on": "2026-12-31", "points": 120}],
                           "through": {"S001": 4}, "version": 12},
        "member.beacon_keys": {"member_id": "G1", "keys": [{"day": "20261130", "key": "0123456789abcdef" * 2},  # issue 14
                                                           {"day": "20261201", "key": "fedcba9876543210" * 2}]},
        "reservation.upsert": {"reservation_id": "R00000001", "store_id": "S001", "sku": "A1", "qty": 1,  # issue 18
                               "state": "requested", "channel": "web", "member_id": None, "customer": None,
                               "pickup_store": None, "reason": None, "expires_at": NOW + 900, "version": 13},
        "delivery.upsert": {"reservation_id": "S002-D000001", "store_id": "S001", "ordered_at": "S002", "sku": "A1",
                            "qty": 1, "member_id": None, "customer": "山田", "address": "〒150-0001 渋谷区1-2-3",
                            "phone": None, "version": 15},  # issue 18 §7
        "member.recommendations": {"member_id": "G1", "as_of": "2026-11-30", "version": 14,  # issue 17 (H6)
                                   "items": [{"sku": "A1", "name": "茶", "reason": "bought-with:B2", "score": 0.42}]},
    }  # fmt: skip
    assert set(samples) == set(CHANGE_KINDS)
    for kind, data in samples.items():
        assert json.loads(json.dumps(data)) == data
        decode_change(kind, data)
