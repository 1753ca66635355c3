"""Dock inspection in the store database: ASNs from the feed, verdicts, accepting into stock and the outbox,
reports (text, JSON, EPCIS 2.0) and the `tenpo edge inspect` commands."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.edge import db as edge_db
from tenpo.edge.feed import apply_page
from tenpo.edge.inspection import store
from tenpo.edge.inspection.epcis import epcis_document
from tenpo.edge.inspection.matching import DOOR, INSIDE
from tenpo.edge.inspection.report import ReportSettings, render_text, write_reports
from tenpo.edge.inspection.session import DockSessions, SessionSettings
from tenpo.sandbox import write_store_config
from tenpo.shared.epc import encode_sgtin96
from tenpo.shared.errors import UserError
from tenpo.shared.protocol import Change, ChangePage
from tests.support.clerks import AS_CLERK, AS_MANAGER, MANAGER_ID, add_store_clerks, pins_on_stdin

TEA, ONIGIRI, UNKNOWN = "4901085089583", "4901234567894", "4902102072618"
T0 = 1_767_225_600.0
OURS = [encode_sgtin96(TEA, s) for s in range(1, 7)] + [encode_sgtin96(ONIGIRI, s) for s in range(1, 5)]
THEIRS = [encode_sgtin96(TEA, s) for s in range(101, 104)]


def feed(db, *changes: tuple[str, str, dict]) -> None:
    cursor = db.conn.execute("SELECT coalesce(max(value), 0) FROM counters WHERE name = 'cursor'").fetchone()[0]
    page_changes = [Change(cursor + i + 1, kind, key, data) for i, (kind, key, data) in enumerate(changes)]
    last = cursor + len(changes)
    apply_page(db, "S001", ChangePage(cursor, last, last, page_changes))


@pytest.fixture
def db(tmp_path: Path):
    database = edge_db.connect(tmp_path / "S001.db")
    feed(
        database,
        ("product.upsert", "TEA-500",
         {"sku": "TEA-500", "jan": TEA, "name": "緑茶", "price": 150, "tax_class": "reduced", "version": 0}),
        ("product.upsert", "ONIGIRI-S",
         {"sku": "ONIGIRI-S", "jan": ONIGIRI, "name": "おにぎり", "price": 160, "tax_class": "reduced", "version": 0}),
        ("asn.upsert", "SHP-1", {"shipment_id": "SHP-1", "store": "S001", "epcs": OURS, "status": "open", "version": 0}),
        ("asn.upsert", "SHP-9", {"shipment_id": "SHP-9", "store": "S002", "epcs": THEIRS, "status": "open", "version": 0}),
    )
    yield database
    database.conn.close()


def delivery(arriving: list[str], start: float = T0):
    sessions = DockSessions(SessionSettings(quiet_s=2.0, rssi_min_dbm=-80))
    for i, epc in enumerate(arriving):
        sessions.feed(epc, -50, DOOR, start + i * 0.1)
        sessions.feed(epc, -60, INSIDE, start + i * 0.1 + 0.05)
    closed = sessions.poll(start + len(arriving) * 0.1 + 5)
    assert closed is not None
    return closed


def stock(db) -> dict[str, int]:
    return dict(db.conn.execute("SELECT sku, sum(delta) FROM stock_ledger GROUP BY sku").fetchall())


def outbox(db) -> list[tuple[str, dict]]:
    return [(t, json.loads(p)) for t, p in db.conn.execute("SELECT type, payload FROM outbox ORDER BY seq")]


def test_asns_arrive_through_the_feed_and_bad_ones_become_dead_letters(db) -> None:
    assert [a.shipment_id for a in store.open_asns(db.conn, "S001")] == ["SHP-1"]
    assert store.cross_reads(db.conn, "S001", [THEIRS[0], OURS[0]]) == {
        THEIRS[0]: store.CrossRead(THEIRS[0], "S002", "SHP-9")}
    feed(db, ("asn.upsert", "BAD", {"shipment_id": "BAD", "store": "S001", "epcs": ["zz"], "version": 0}),
         ("asn.closed", "SHP-9", {"shipment_id": "SHP-9", "status": "received", "version": 0}))
    reason = db.conn.execute("SELECT reason FROM dead_letters").fetchone()[0]
    assert reason.startswith("asn.upsert: cannot apply") and "must be hexadecimal" in reason
    assert store.cross_reads(db.conn, "S001", [THEIRS[0]]) == {}, "a received ASN no longer explains cross-reads"


def test_accept_posts_the_receipt_and_its_events_in_one_transaction(db, tmp_path: Path) -> None:
    arriving = OURS[:-1] + [THEIRS[0], encode_sgtin96(UNKNOWN, 1)]  # one missing, one cross-read, one stranger
    record = store.record_inspection(db, "S001", delivery(arriving))
    assert record.status == store.PENDING and record.shipment_id == "SHP-1"
    v = record.verdict
    assert (len(v.matched), v.missing, [c.epc for c in v.wrong_store]) == (9, [OURS[-1]], [THEIRS[0]])
    assert v.unexpected == [encode_sgtin96(UNKNOWN, 1)]
    assert stock(db) == {} and outbox(db) == [], "nothing is posted before a clerk accepts"

    accepted = store.accept(db, "S001", record.inspection_id, by="sato")
    assert stock(db) == {"TEA-500": 6, "ONIGIRI-S": 3}
    events = outbox(db)
    assert [t for t, _ in events] == ["stock.moved", "stock.moved", "inspection.completed"]
    moved = {p["sku"]: p for t, p in events if t == "stock.moved"}
    assert moved["TEA-500"] == {"sku": "TEA-500", "delta": 6, "reason": "receipt", "location": "floor", "ref": "SHP-1"}
    completed = events[-1][1]
    assert completed["status"] == "accepted" and completed["shipment_id"] == "SHP-1" and completed["by"] == "sato"
    assert completed["summary"]["missing"] == 1 and completed["summary"]["wrong_store"] == 1
    assert completed["summary"]["received_posted"] == 9
    assert accepted.unmapped_gtins == ["0" + UNKNOWN], "a GTIN not in the product list is reported, not posted"
    assert db.conn.execute("SELECT status FROM asns WHERE shipment_id = 'SHP-1'").fetchone()[0] == "received"
    with pytest.raises(UserError, match="already accepted"):
        store.accept(db, "S001", record.inspection_id)
    assert stock(db) == {"TEA-500": 6, "ONIGIRI-S": 3}

    paths = write_reports(accepted, ReportSettings(tmp_path / "reports"))
    assert sorted(p.name for p in paths) == [f"{record.inspection_id}.epcis.jsonld", f"{record.inspection_id}.json",
                                            f"{record.inspection_id}.txt"]  # fmt: skip
    text = (tmp_path / "reports" / f"{record.inspection_id}.txt").read_text()
    assert "status ACCEPTED" in text and "wrong store     1" in text and "TEA-500        +6" in text
    saved = json.loads((tmp_path / "reports" / f"{record.inspection_id}.json").read_text())
    assert saved["verdict"]["missing"] == [OURS[-1]] and saved["summary"]["matched"] == 9


def test_a_failure_while_accepting_posts_nothing(db, monkeypatch) -> None:
    record = store.record_inspection(db, "S001", delivery(OURS))
    real = store.append

    def failing(conn, payload):
        if payload.TYPE == "inspection.completed":
            raise RuntimeError("disk full")
        return real(conn, payload)

    monkeypatch.setattr(store, "append", failing)
    with pytest.raises(RuntimeError):
        store.accept(db, "S001", record.inspection_id)
    assert stock(db) == {} and outbox(db) == []
    assert store.get_inspection(db.conn, "S001", record.inspection_id).status == store.PENDING


def test_hold_then_accept(db) -> None:
    record = store.record_inspection(db, "S001", delivery(OURS[:5]))
    held = store.hold(db, "S001", record.inspection_id, by="manager", note="short delivery")
    assert held.status == store.HELD and stock(db) == {}
    assert outbox(db)[-1][1]["status"] == "held"
    with pytest.raises(UserError, match="only a pending one"):
        store.hold(db, "S001", record.inspection_id)
    store.accept(db, "S001", record.inspection_id, by="manager")
    assert stock(db) == {"TEA-500": 5}


def test_epcis_export_is_an_epcis_2_object_event(db) -> None:
    record = store.record_inspection(db, "S001", delivery(OURS[:3] + ["E2801160600002040000ABCD"]))
    document = epcis_document(record, read_point="urn:epc:id:sgln:4901234.00001.1",
                              biz_location="urn:epc:id:sgln:4901234.00001.0")  # fmt: skip
    # Shape of the EPCIS 2.0 JSON-LD binding, as in the standard's examples (github.com/gs1/EPCIS, JSON/
    # Example_9.6.1-ObjectEvent.jsonld, and the ratified 2.0 context URL on ref.gs1.org).
    assert document["@context"] == ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]
    assert (document["type"], document["schemaVersion"]) == ("EPCISDocument", "2.0")
    datetime.fromisoformat(document["creationDate"])
    (event,) = document["epcisBody"]["eventList"]
    assert (event["type"], event["action"], event["bizStep"]) == ("ObjectEvent", "OBSERVE", "receiving")
    assert re.fullmatch(r"[+-]\d\d:\d\d", event["eventTimeZoneOffset"]) and event["eventTimeZoneOffset"] == "+09:00"
    assert datetime.fromisoformat(event["eventTime"]).timestamp() == pytest.approx(record.closed_at, abs=0.001)
    assert event["epcList"][:3] == [f"urn:epc:id:sgtin:4901085.008958.{s}" for s in (1, 2, 3)]
    assert event["epcList"][3] == "urn:epc:raw:96.xE2801160600002040000ABCD"
    assert event["readPoint"] == {"id": "urn:epc:id:sgln:4901234.00001.1"}
    assert event["bizTransactionList"] == [{"type": "desadv", "bizTransaction": "urn:tenpo:asn:SHP-1"}]
    assert event["eventID"].startswith("urn:uuid:")
    assert epcis_document(record)["epcisBody"]["eventList"][0]["eventID"] == event["eventID"], "stable per inspection"


def test_text_report_lists_differences(db) -> None:
    record = store.record_inspection(db, "S001", delivery(OURS[2:] + [THEIRS[1]]))
    text = render_text(record)
    assert "status PENDING  verdict DIFFERENCES" in text
    assert f"Missing (2):\n  {OURS[0]}\n  {OURS[1]}" in text
    assert f"{THEIRS[1]}  -> S002 (SHP-9)" in text


# ---------------------------------------------------------------------------- commands


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_store_config(tmp_path / "store", "S001", "mqtt://127.0.0.1:1")
    dock = '\n[dock]\nquiet_s = 2.0\nrssi_min_dbm = -80\nread_point = "urn:epc:id:sgln:4901234.00001.1"\n'
    path.write_text(path.read_text() + dock)
    database = edge_db.connect(tmp_path / "store" / "S001.db")
    feed(database, ("product.upsert", "TEA-500", {"sku": "TEA-500", "jan": TEA, "name": "緑茶", "price": 150,
                                                  "tax_class": "reduced", "version": 0}))  # fmt: skip
    database.conn.close()
    return path


def test_cli_load_asn_inspect_recorded_reads_accept_and_export(config: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    add_store_clerks(tmp_path / "store" / "S001.db")
    pins_on_stdin(monkeypatch)
    asn = tmp_path / "asn.csv"
    asn.write_text("shipment_id,store,epc\n" + "".join(f"F1,S001,{e}\n" for e in OURS[:6]) + "F2,S001,nothex\n")
    assert main(["edge", "inspect", "--config", str(config), "--asn", str(asn)]) == 1
    out, err = capsys.readouterr()
    assert "ASN F1 for S001: 6 items, 0 cartons" in out
    assert "rejected line 8: epc 'nothex' must be hexadecimal" in err

    reads = tmp_path / "reads.jsonl"  # as `tenpo rfid listen --json` prints them
    lines = [json.dumps({"epc": e, "rssi": -55, "antenna": 1, "ts": T0 + i}) for i, e in enumerate(OURS[:5])]
    lines.append(json.dumps({"epc": OURS[5], "rssi": -95, "antenna": 1, "ts": T0 + 6}))  # too weak: missing
    lines.append(json.dumps({"frames_ok": 6, "frames_rejected": 0, "distinct_epcs": 6}))
    reads.write_text("\n".join(lines) + "\n")
    assert main(["edge", "inspect", "--config", str(config), "--reads", str(reads), "--json"]) == 0
    inspection = json.loads(capsys.readouterr().out)["inspection"]
    assert inspection["shipment_id"] == "F1" and inspection["verdict"]["missing"] == [OURS[5]]
    inspection_id = inspection["inspection_id"]

    assert main(["edge", "inspect", "list", "--config", str(config)]) == 0
    assert f"{inspection_id}  pending" in capsys.readouterr().out
    # One unit missing: a clerk may not accept the difference, a manager may (and is recorded as deciding).
    assert main(["edge", "inspect", "accept", inspection_id, *AS_CLERK, "--config", str(config)]) == 1
    assert "needs a manager" in capsys.readouterr().err
    assert main(["edge", "inspect", "accept", inspection_id, *AS_MANAGER, "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "TEA-500        +5" in out and "reports:" in out
    assert (config.parent / "inspections" / f"{inspection_id}.epcis.jsonld").exists()
    assert main(["edge", "inspect", "show", inspection_id, "--epcis", "--config", str(config)]) == 0
    event = json.loads(capsys.readouterr().out)["epcisBody"]["eventList"][0]
    assert event["readPoint"] == {"id": "urn:epc:id:sgln:4901234.00001.1"} and len(event["epcList"]) == 5
    assert main(["edge", "inspect", "accept", inspection_id, *AS_MANAGER, "--config", str(config)]) == 1
    assert "already accepted" in capsys.readouterr().err
    assert store.get_inspection(edge_db.connect(tmp_path / "store" / "S001.db").conn, "S001",
                                inspection_id).decided_by == MANAGER_ID  # fmt: skip
