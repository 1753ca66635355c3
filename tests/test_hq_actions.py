"""Dead-letter actions and the shared status queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from tenpo.cli import main
from tenpo.cloud import status
from tenpo.cloud.db import Central
from tenpo.cloud.hq import actions, queries, sim
from tenpo.cloud.hq.config import MonitorConfig
from tenpo.cloud.hq.data import HqData, Throughput
from tenpo.cloud.hq.sim import FIXED_NOW
from tenpo.shared.errors import UserError


@pytest.fixture
def central(central_url: str):
    db = Central(central_url)
    yield db
    db.close()


def audit_actions(db: Central) -> list[tuple[str, str]]:
    rows = db.all("SELECT action, subject FROM audit_log WHERE action LIKE ? ORDER BY id", ("dead_letter.%",))
    return [(a, s) for a, s in rows]


def test_a_batch_from_an_unregistered_store_applies_once_the_store_is_registered(central: Central) -> None:
    stores = sim.seed_stores(central, 2, events_per_store=3)
    s3 = sim.SimStore("S003", sim._seed_key(3), "stream-003")
    payload = sim.signed_batch(s3, 1, 4, FIXED_NOW)
    letter = sim.add_dead_letter(central, "S003", sim.events_topic("S003"), "unknown store 'S003' (not registered)",
                                 payload, FIXED_NOW - 30)  # fmt: skip

    still = actions.retry_dead_letter(central, letter)
    assert still.result == actions.STILL_FAILING and "not registered" in still.detail
    assert central.scalar("SELECT status FROM dead_letters WHERE id = ?", (letter,)) == "open"

    from tenpo.cloud.admin import add_store
    from tenpo.shared import crypto

    add_store(central, "S003", crypto.public_key_pem(s3.key), "Store 3")
    outcome = actions.retry_dead_letter(central, letter)
    assert (outcome.result, outcome.applied_events) == (actions.APPLIED, 4)
    assert central.scalar("SELECT last_applied_seq FROM stores WHERE store_id = 'S003'") == 4
    assert central.scalar("SELECT sum(delta) FROM stock_ledger WHERE store_id = 'S003'") == 4
    assert central.scalar("SELECT status FROM dead_letters WHERE id = ?", (letter,)) == "retried"
    assert audit_actions(central) == [("dead_letter.retry_failed", f"dead_letter:{letter}"),
                                      ("dead_letter.retried", f"dead_letter:{letter}")]  # fmt: skip
    with pytest.raises(UserError, match="already retried"):
        actions.retry_dead_letter(central, letter)
    assert stores  # the seeded neighbours are untouched
    assert central.scalar("SELECT last_applied_seq FROM stores WHERE store_id = 'S001'") == 3


def test_a_retry_of_events_hq_already_has_closes_the_letter_without_doubling(central: Central) -> None:
    (s1,) = sim.seed_stores(central, 1, events_per_store=5)
    batch = sim.signed_batch(s1, 4, 2, FIXED_NOW)
    letter = sim.add_dead_letter(central, "S001", sim.events_topic("S001"), "aggregator crashed", batch, FIXED_NOW)
    outcome = actions.retry_dead_letter(central, letter)
    assert outcome.result == actions.ALREADY_APPLIED and outcome.closed
    assert central.scalar("SELECT count(*) FROM events WHERE store_id = 'S001'") == 5


def test_a_tampered_payload_stays_open(central: Central) -> None:
    (s1,) = sim.seed_stores(central, 1, events_per_store=1)
    payload = sim.signed_batch(s1, 2, 1, FIXED_NOW).replace(b'\\"delta\\":1', b'\\"delta\\":9')
    letter = sim.add_dead_letter(central, "S001", sim.events_topic("S001"), "bad signature", payload, FIXED_NOW)
    assert actions.retry_dead_letter(central, letter).detail == "bad signature"
    garbage = sim.add_dead_letter(central, "S001", sim.events_topic("S001"), "invalid JSON", b"\xff\x00{", FIXED_NOW)
    assert actions.retry_dead_letter(central, garbage).result == actions.STILL_FAILING


def test_an_event_its_planner_refused_is_applied_on_retry_after_a_fix(central: Central, monkeypatch) -> None:
    """An upgrade teaches HQ a new event type: the stored event is planned again, once."""
    import uuid

    from tenpo.cloud import effects
    from tenpo.cloud.apply import apply_batch
    from tenpo.shared import events
    from tenpo.shared.protocol import Event, EventBatch

    sim.seed_stores(central, 1, events_per_store=1)
    stream = central.scalar("SELECT stream FROM stores WHERE store_id = 'S001'")
    last = int(central.scalar("SELECT last_applied_seq FROM stores WHERE store_id = 'S001'"))
    gift = Event(last + 1, uuid.uuid4().hex, "gift.issued", 1, 0, {"sku": "A1", "delta": -1, "reason": "gift"})
    bad = Event(last + 2, uuid.uuid4().hex, "stock.adjusted", 1, 0, {"sku": "A1", "delta": "lots", "reason": "x"})
    assert apply_batch(central, "S001", EventBatch(stream, [gift, bad])).hwm == last + 2
    letters = dict(central.all("SELECT event_seq, id FROM dead_letters WHERE store_id = 'S001' AND event_seq IS NOT NULL"))
    before = int(central.scalar("SELECT coalesce(sum(delta), 0) FROM stock_ledger WHERE store_id = 'S001'"))

    outcome = actions.retry_dead_letter(central, letters[last + 2])
    assert (outcome.result, outcome.detail) == (actions.STILL_FAILING, "stock.adjusted: delta: expected int, got str")
    assert actions.retry_dead_letter(central, letters[last + 1]).result == actions.STILL_FAILING  # not fixed yet

    # The fix: the new type in the catalogue and a planner for it.
    monkeypatch.setitem(events.CATALOGUE, ("gift.issued", 1), events.StockMoved)
    monkeypatch.setitem(effects.PLANNERS, "gift.issued", effects.PLANNERS["stock.moved"])
    outcome = actions.retry_dead_letter(central, letters[last + 1])
    assert outcome.result == actions.APPLIED and outcome.closed
    assert int(central.scalar("SELECT coalesce(sum(delta), 0) FROM stock_ledger WHERE store_id = 'S001'")) == before - 1
    with pytest.raises(UserError, match="already retried"):
        actions.retry_dead_letter(central, letters[last + 1])


def test_discard_needs_a_note_and_is_audited(central: Central) -> None:
    sim.seed_stores(central, 1, events_per_store=1)
    letter = sim.add_dead_letter(central, "S001", "tenpo/v1/stores/S001/up/status", "schema", b"{}", FIXED_NOW)
    with pytest.raises(UserError, match="note"):
        actions.discard_dead_letter(central, letter, "  ")
    actions.discard_dead_letter(central, letter, "test message from the installer")
    assert central.one("SELECT status, note FROM dead_letters WHERE id = ?", (letter,)) == (
        "discarded", "test message from the installer")  # fmt: skip
    detail = central.scalar("SELECT detail FROM audit_log WHERE action = 'dead_letter.discarded'")
    assert json.loads(detail) == {"note": "test message from the installer"}
    with pytest.raises(UserError, match="does not exist"):
        actions.discard_dead_letter(central, 999, "x")


def test_cli_status_and_the_monitor_read_the_same_numbers(central: Central, central_url: str) -> None:
    sim.seed_stores(central, 12)
    report = status.status_report(central, FIXED_NOW)
    data = HqData(central_url, MonitorConfig(), clock=lambda: FIXED_NOW)
    try:
        overview = data.overview()
    finally:
        data.close()
    for row in report["stores"]:
        assert row["events_last_minute"] == overview.per_minute.get(row["store_id"], 0)
    assert sum(overview.per_minute.values()) == report["totals"]["events_last_minute"] > 0
    assert [r["lag_s"] for r in report["stores"]] == [r["lag_s"] for r in overview.records]
    conflicts = None if overview.conflicts is None else sum(overview.conflicts.values())
    assert report["totals"]["open_conflicts"] == conflicts  # None while there is no conflicts table


def test_cloud_status_json_keeps_its_keys(central_url: str, capsys) -> None:
    db = Central(central_url)
    sim.seed_stores(db, 2)
    db.close()
    assert main(["cloud", "status", "--db", central_url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("store_id", "online", "last_seen", "last_applied_seq", "events_applied", "dead_letters"):
        assert key in report["stores"][0]
    assert {"stores", "online", "events_applied", "dead_letters"} <= set(report["totals"])


def test_throughput_counted_incrementally_equals_a_full_count(central: Central) -> None:
    (s1,) = sim.seed_stores(central, 1, events_per_store=40)
    cache = Throughput(10.0, 60)
    cache.refresh(central, FIXED_NOW - 200)
    cache.refresh(central, FIXED_NOW - 100)
    cache.refresh(central, FIXED_NOW)
    fresh = Throughput(10.0, 60)
    fresh.refresh(central, FIXED_NOW)
    assert cache.series(FIXED_NOW) == fresh.series(FIXED_NOW)
    assert sum(fresh.series(FIXED_NOW)[0]["S001"]) == 40


def test_store_detail_without_and_with_an_inspections_table(central: Central) -> None:
    sim.seed_stores(central, 1, events_per_store=9)
    detail = queries.store_detail(central, "S001")
    assert detail is not None and sum(count for _, count, _ in detail.event_types) == 9
    assert detail.cursor == 3 and detail.latest_change == 10
    if not status.table_exists(central, "inspections"):
        assert detail.inspections is None
        central.execute("CREATE TABLE inspections (store_id TEXT, inspection_id TEXT, shipment_id TEXT, status TEXT,"
                        " summary TEXT, at REAL, stream TEXT, store_seq INTEGER, applied_at REAL)")  # fmt: skip
    central.execute("INSERT INTO inspections(store_id, inspection_id, shipment_id, status, summary, at, stream, store_seq,"
                    " applied_at) VALUES ('S001', 'I-1', 'SH-9', 'held', '2 missing', 5.0, 's', 1, 6.0)")  # fmt: skip
    columns, rows = queries.store_detail(central, "S001").inspections
    assert "status" in columns and rows[0][columns.index("status")] == "held"
    assert queries.store_detail(central, "NOPE") is None


def test_preview_never_raises_and_truncates() -> None:
    assert queries.preview(b"\xff\xfe{ab") == "\ufffd\ufffd{ab"
    assert queries.preview(None) == ""
    assert len(queries.preview("x" * 1000)) == queries.PAYLOAD_PREVIEW
    assert queries.preview(memoryview(b"a\n  b")) == "a b"
