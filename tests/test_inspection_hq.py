"""HQ side of dock inspection, on SQLite and PostgreSQL: ASN import into the change feed, and the
``inspection.completed`` event recorded once, marking its ASN received for every store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.cloud.admin import add_store
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.asn import admin
from tenpo.cloud.db import Central
from tenpo.cloud.feed import changes_after
from tenpo.shared import crypto
from tenpo.shared.epc import encode_sgtin96
from tenpo.shared.protocol import Event, EventBatch

TEA = "4901085089583"
EPCS = [encode_sgtin96(TEA, s) for s in range(1, 4)]


@pytest.fixture
def central(central_url: str, tmp_path: Path):
    db = Central(central_url)
    for store_id in ("S001", "S002"):
        crypto.generate_keypair(tmp_path / f"{store_id}.key", tmp_path / f"{store_id}.pub")
        add_store(db, store_id, (tmp_path / f"{store_id}.pub").read_text())
    yield db
    db.close()


def write_asns(tmp_path: Path, *documents: dict) -> Path:
    path = tmp_path / "asns.json"
    path.write_text(json.dumps(list(documents)))
    return path


def test_import_sends_each_asn_to_every_store_once(central: Central, tmp_path: Path) -> None:
    path = write_asns(
        tmp_path,
        {"shipment_id": "SHP-1", "store": "S001", "epcs": EPCS},
        {"shipment_id": "SHP-2", "store": "S002", "lines": [{"gtin": TEA, "qty": 24}]},
        {"shipment_id": "SHP-3", "store": "S404", "epcs": EPCS},
    )
    report = admin.import_asns(central, path)
    assert (report.created, report.rejected) == (["SHP-1", "SHP-2"], ["SHP-3"])
    assert [str(e) for e in report.errors] == ["shipment SHP-3: store S404 is not registered at HQ"]
    page = changes_after(central, 0, 100, "S002")
    asn_changes = [c for c in page.changes if c.kind == "asn.upsert"]
    assert [(c.key, c.store, c.data["store"]) for c in asn_changes] == [
        ("SHP-1", None, "S001"),
        ("SHP-2", None, "S002"),
    ]
    assert asn_changes[0].data["epcs"] == EPCS and asn_changes[0].data["version"] == asn_changes[0].seq
    again = admin.import_asns(central, path)
    assert again.unchanged == ["SHP-1", "SHP-2"] and again.created == []
    assert len([c for c in changes_after(central, 0, 100).changes if c.kind == "asn.upsert"]) == 2


def receipt_events(status: str = "accepted", first_seq: int = 1) -> list[Event]:
    moved = {"sku": "TEA-500", "delta": 3, "reason": "receipt", "location": "floor", "ref": "SHP-1"}
    completed = {"inspection_id": "S001-I000001", "shipment_id": "SHP-1", "status": status, "at": 1_767_225_600.0,
                 "summary": {"matched": 3, "missing": 0, "received_posted": 3 if status == "accepted" else 0}}  # fmt: skip
    events = [(f"e{first_seq}", "inspection.completed", completed)]
    if status == "accepted":
        events.insert(0, (f"m{first_seq}", "stock.moved", moved))
    return [Event(first_seq + i, eid, kind, 1, 1, payload) for i, (eid, kind, payload) in enumerate(events)]


def test_an_accepted_inspection_is_recorded_once_and_closes_its_asn(central: Central, tmp_path: Path) -> None:
    admin.import_asns(central, write_asns(tmp_path, {"shipment_id": "SHP-1", "store": "S001", "epcs": EPCS}))
    held = receipt_events("held")
    apply_batch(central, "S001", EventBatch("stream", held))
    assert [(r["status"], r["shipment_id"]) for r in admin.inspection_rows(central)] == [("held", "SHP-1")]
    assert admin.asn_rows(central)[0]["status"] == "open", "a held delivery is not received"

    accepted = receipt_events("accepted", first_seq=2)
    batch = EventBatch("stream", accepted)
    assert apply_batch(central, "S001", batch).hwm == 3
    assert apply_batch(central, "S001", batch).hwm == 3  # delivered twice: applied once
    rows = admin.inspection_rows(central)
    assert len(rows) == 1 and rows[0]["status"] == "accepted" and rows[0]["summary"]["received_posted"] == 3
    assert central.all("SELECT sku, delta, reason FROM stock_ledger") == [("TEA-500", 3, "receipt")]
    asn = admin.asn_rows(central)[0]
    assert (asn["status"], asn["received_by_inspection"]) == ("received", "S001-I000001")
    closed = [c for c in changes_after(central, 0, 100, "S002").changes if c.kind == "asn.closed"]
    assert [(c.key, c.store, c.data["status"]) for c in closed] == [("SHP-1", None, "received")]


def test_a_bad_inspection_event_is_a_dead_letter_naming_the_field(central: Central) -> None:
    bad = Event(
        1, "x", "inspection.completed", 1, 1, {"inspection_id": "I1", "status": "lost", "summary": {}, "at": 1.0}
    )
    apply_batch(central, "S001", EventBatch("stream", [bad]))
    reason = central.scalar("SELECT reason FROM dead_letters")
    assert reason == "event 1 (inspection.completed): status: invalid enum value 'lost': must be one of accepted, held"
    assert admin.inspection_rows(central) == []


def test_cloud_asn_commands(central: Central, central_url: str, tmp_path: Path, capsys) -> None:
    csv_path = tmp_path / "asns.csv"
    csv_path.write_text(f"shipment_id,store,gtin,qty\nC1,S001,{TEA},12\nC2,S002,4901085089584,1\n")
    assert main(["cloud", "asn", "import", str(csv_path), "--db", central_url]) == 1
    out, err = capsys.readouterr()
    assert "1 created" in out and "1 rejected" in out
    assert "rejected line 3: gtin 4901085089584 has check digit 4, expected 3" in err
    assert main(["cloud", "asn", "list", "--db", central_url, "--json"]) == 0
    assert [(r["shipment_id"], r["status"], r["units"]) for r in json.loads(capsys.readouterr().out)] == [
        ("C1", "open", 12)
    ]
    assert main(["cloud", "asn", "close", "C1", "--db", central_url]) == 0
    capsys.readouterr()
    assert main(["cloud", "asn", "close", "C1", "--db", central_url]) == 1
    assert "already closed" in capsys.readouterr().err
    assert main(["cloud", "asn", "inspections", "--db", central_url]) == 0
    assert "no inspections reported yet" in capsys.readouterr().out


def test_the_first_accepted_inspection_of_a_shipment_closes_it_in_one_batch_as_one_at_a_time(
    central: Central, tmp_path: Path
) -> None:
    admin.import_asns(central, write_asns(tmp_path, {"shipment_id": "SHP-1", "store": "S001", "epcs": EPCS}))
    first, second = receipt_events("accepted", first_seq=1), receipt_events("accepted", first_seq=3)
    second[1].payload["inspection_id"] = "S001-I000002"  # a clerk inspected the same delivery twice
    apply_batch(central, "S001", EventBatch("stream", [*first, *second]))  # one batch (or one group of batches)
    asn = admin.asn_rows(central)[0]
    assert (asn["status"], asn["received_by_inspection"]) == ("received", "S001-I000001")
