"""Store-to-store transfers (issue 18 §6): stock leaves the sender, HQ makes the receiver's ASN, the
receiver's dock inspection finds what came, and what did not come is a conflict at HQ."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.cloud.admin import add_store, import_products
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.asn.transfers import shortfall
from tenpo.cloud.db import Central
from tenpo.cloud.sales import conflicts
from tenpo.edge import db as edge_db
from tenpo.edge import replica, transfers
from tenpo.edge.config import load_config
from tenpo.edge.inspection import store as inspection
from tenpo.edge.inspection.matching import Sighting
from tenpo.edge.inspection.session import ClosedSession
from tenpo.sandbox import aggregator_process, provision_store, store_process, wait_until
from tenpo.shared import crypto
from tenpo.shared.epc import encode_sgtin96
from tenpo.shared.errors import UserError
from tenpo.shared.protocol import Event, EventBatch
from tests.support.clerks import AS_CLERK, add_store_clerks, pins_on_stdin

TEA = "4901234567894"
PRODUCTS = f"sku,jan,name,price,tax_class\nTEA-500,{TEA},緑茶 500ml,150,reduced\nNOJAN,,手作り雑貨,900,standard\n"
SENT = [encode_sgtin96(TEA, serial) for serial in range(1, 51)]  # 50 tagged bottles


def arrived(epcs: list[str], at: float) -> ClosedSession:
    """The receiving dock's closed session: every tag seen coming through the door."""
    sightings = {epc: Sighting(epc, at, at + 1, reads=3, first_door_ts=at) for epc in epcs}
    return ClosedSession(at, at + 5, at + 1, sightings, len(epcs) * 3, "quiet")


def on_hand_at_hq(central: Central, store_id: str) -> int:
    return int(central.scalar("SELECT coalesce(sum(on_hand), 0) FROM stock_levels WHERE store_id = ? AND sku = 'TEA-500'",
                              (store_id,)))  # fmt: skip


def test_the_shortfall_rule_is_per_gtin_and_silent_when_everything_came() -> None:
    assert shortfall({TEA: 50}, {"short": {}, "over": {}}) is None
    found = shortfall({TEA: 50}, {"short": {TEA: 1}, "over": {}})
    assert found is not None and (found["missing_units"], found["extra_units"], found["sent"]) == (1, 0, 50)


@pytest.mark.timeout(120)
def test_a_transfer_with_two_percent_missing_moves_stock_once_and_opens_a_conflict(
        tmp_path: Path, broker, sqlite_url: str, capsys, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    central = Central(sqlite_url)
    (tmp_path / "products.csv").write_text(PRODUCTS, encoding="utf-8")
    import_products(central, tmp_path / "products.csv")
    sender_path = provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url)
    receiver_path = provision_store(tmp_path / "S002", "S002", broker.url, sqlite_url)
    sender, receiver = (edge_db.connect(load_config(str(p)).database) for p in (sender_path, receiver_path))
    add_store_clerks(load_config(str(sender_path)).database)
    pins_on_stdin(monkeypatch)
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agents = [store_process(sender_path).start(), store_process(receiver_path).start()]
    try:
        for db in (sender, receiver):
            wait_until(lambda db=db: db.conn.execute("SELECT count(*) FROM products").fetchone()[0] == 2, 30,
                       what="the stores to bootstrap")  # fmt: skip
        replica.adjust_stock(sender, "TEA-500", 80, "count")
        epc_file = tmp_path / "sent.txt"
        epc_file.write_text("# carton 1\n" + "\n".join(e.lower() for e in SENT) + "\n")

        # Refused before anything moves: no clerk, a product without JAN, more than on hand, a foreign tag.
        assert main(["edge", "transfer", "create", "--to", "S002", "--sku", "TEA-500", "--qty", "5",
                     "--config", str(sender_path)]) == 2  # fmt: skip
        assert "needs a clerk" in capsys.readouterr().err
        for argv, message in ((["--sku", "NOJAN", "--qty", "1"], "has no JAN"),
                              (["--sku", "TEA-500", "--qty", "81"], "80 on hand here"),
                              (["--sku", "TEA-500", "--qty", "1", "--to", "S001"], "that is this store")):  # fmt: skip
            to = [] if "--to" in argv else ["--to", "S002"]
            assert main(["edge", "transfer", "create", *to, *argv, *AS_CLERK, "--config", str(sender_path)]) == 1
            assert message in capsys.readouterr().err
        with pytest.raises(UserError, match="is not TEA-500's"):
            transfers.check_epcs([encode_sgtin96("4901234567900", 1)], TEA.zfill(14), "TEA-500")
        assert replica.stock_levels(sender, "S001", "TEA-500")[0].on_hand == 80

        assert main(["edge", "transfer", "create", "--to", "S002", "--sku", "TEA-500", "--epc-file", str(epc_file),
                     *AS_CLERK, "--json", "--config", str(sender_path)]) == 0  # fmt: skip
        made = transfers.transfers(sender)[0]
        assert (made.qty, made.epcs, made.clerk_id) == (50, 50, AS_CLERK[1])
        assert replica.stock_levels(sender, "S001", "TEA-500")[0].on_hand == 30  # left with the transfer, at once

        # HQ turns it into the receiving store's ASN; the receiver's dock finds 49 of 50 (2 % missing).
        wait_until(lambda: receiver.conn.execute("SELECT 1 FROM asns WHERE shipment_id = ?", (made.transfer_id,)).fetchone(),
                   30, what="the transfer's ASN at the receiving store")  # fmt: skip
        record = inspection.record_inspection(receiver, "S002", arrived(SENT[1:], time.time()))
        assert (record.shipment_id, len(record.verdict.missing)) == (made.transfer_id, 1)
        inspection.accept(receiver, "S002", record.inspection_id, by="9001")

        opened = wait_until(lambda: [c for c in conflicts.list_open(central) if c.kind == conflicts.TRANSFER], 30,
                            what="the transfer-short conflict at HQ")  # fmt: skip
        (conflict,) = opened
        assert (conflict.subject, conflict.store_id, conflict.detail["missing_units"]) == (made.transfer_id, "S002", 1)
        assert conflict.detail["skus"] == {"TEA-500": 1} and conflict.detail["from_store"] == "S001"
        wait_until(lambda: on_hand_at_hq(central, "S002") == 49, 30, what="the receipt at HQ")
        assert on_hand_at_hq(central, "S001") == 30
        assert central.scalar("SELECT status FROM transfers WHERE transfer_id = ?", (made.transfer_id,)) == "received-short"

        # The missing bottle turns up in the sender's back room: HQ books it back there, and the store gets the entry.
        conflicts.resolve(central, conflict.id, "return-to-sender", note="found in the back room")
        assert on_hand_at_hq(central, "S001") == 31
        wait_until(lambda: replica.stock_levels(sender, "S001", "TEA-500")[0].on_hand == 31, 30,
                   what="the correction at the sender")  # fmt: skip
        assert central.scalar("SELECT count(*) FROM dead_letters") == 0
    finally:
        for agent in agents:
            agent.terminate()
        aggregator.terminate()
        central.close()


def test_a_transfer_to_a_store_hq_does_not_know_is_a_conflict_not_a_lost_asn(tmp_path: Path, sqlite_url: str) -> None:
    central = Central(sqlite_url)
    (tmp_path / "products.csv").write_text(PRODUCTS, encoding="utf-8")
    import_products(central, tmp_path / "products.csv")
    crypto.generate_keypair(tmp_path / "S001.key", tmp_path / "S001.pub")
    add_store(central, "S001", crypto.public_key_pem(crypto.load_private_key(tmp_path / "S001.key")))
    payload = {"transfer_id": "TR-S001-1", "to_store": "S777", "lines": [{"sku": "TEA-500", "gtin": TEA.zfill(14), "qty": 3}]}
    ack = apply_batch(central, "S001", EventBatch("stream-1", [Event(1, uuid.uuid4().hex, "transfer.shipped", 1, 1, payload)]))
    assert ack.hwm == 1
    (conflict,) = conflicts.list_open(central)
    assert conflict.kind == conflicts.TRANSFER and "S777 is not registered" in conflict.detail["reason"]
    assert central.scalar("SELECT count(*) FROM asns") == 0
    # Applied again (a resend after a lost ack): nothing doubles.
    apply_batch(central, "S001", EventBatch("stream-1", [Event(1, uuid.uuid4().hex, "transfer.shipped", 1, 1, payload)]))
    assert len(conflicts.list_open(central)) == 1
