"""The dock door end to end: the PTY reader simulator, the inspection service, and the receipt reaching HQ.

The service is tested in-process against the simulator (reader unplugged mid-delivery, a broken
profile beside a working one); the whole chain runs as real processes (Mosquitto, aggregator, store
agent) with the simulator in this process, the way a USB reader sits beside the agent.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.cloud.admin import import_products
from tenpo.cloud.asn import admin as hq_asn
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge.config import load_config
from tenpo.edge.inspection import service, store
from tenpo.edge.rfid.simulator import ReaderSimulator, SimTag
from tenpo.sandbox import Mosquitto, aggregator_process, provision_store, store_process, wait_until, write_store_config
from tenpo.shared.epc import encode_sgtin96
from tests.support.clerks import AS_MANAGER, add_store_clerks, pins_on_stdin

TEA, ONIGIRI = "4901085089583", "4901234567894"
PRODUCTS = f"sku,jan,name,price,tax_class\nTEA-500,{TEA},緑茶 500ml,150,reduced\nONIGIRI-S,{ONIGIRI},おにぎり 鮭,160,reduced\n"
OURS = [encode_sgtin96(TEA, s) for s in range(1, 21)] + [encode_sgtin96(ONIGIRI, s) for s in range(1, 11)]
NEIGHBOUR = [encode_sgtin96(TEA, s) for s in range(501, 506)]
STRANGER = encode_sgtin96(ONIGIRI, 999)
BACKROOM = encode_sgtin96(ONIGIRI, 777)  # on the shelf behind the door: read by the inside antenna only


def delivery_tags() -> list[SimTag]:
    """Two of ours missing, one stranger, one neighbour's cross-read, one backroom tag, one weak read."""
    tags = [SimTag(epc, 1, -50) for epc in OURS[:-2]]
    tags += [SimTag(STRANGER, 1, -55), SimTag(NEIGHBOUR[0], 1, -66), SimTag(BACKROOM, 2, -45)]
    tags.append(SimTag(encode_sgtin96(TEA, 888), 1, -92))  # far away: below the threshold
    return tags


def write_profile(directory: Path, name: str, port: str, protocol: str = "mercury") -> Path:
    path = directory / f"{name}.toml"
    region = 'region = "JP"\n' if protocol == "mercury" else ""  # R2000 modules have no Japan preset
    path.write_text(f'[reader]\nname = "{name}"\nport = "{port}"\nprotocol = "{protocol}"\n{region}'
                    f"tx_power_dbm = {{1 = 20.0}}\nantennas = {{door = 1, inside = 2}}\n")  # fmt: skip
    return path


def add_dock(config: Path, profiles: list[Path], **settings: object) -> None:
    lines = ["", "[dock]", "readers = [" + ", ".join(f'"{p}"' for p in profiles) + "]", "rssi_min_dbm = -80"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    config.write_text(config.read_text() + "\n".join(lines) + "\n")


def seed(db, asns: list[dict]) -> None:
    """Products and ASNs as the feed would bring them."""
    from tenpo.edge.feed import apply_page
    from tenpo.shared.protocol import Change, ChangePage

    changes = [Change(1, "product.upsert", "TEA-500", {"sku": "TEA-500", "jan": TEA, "name": "緑茶", "price": 150,
                                                      "tax_class": "reduced", "version": 0}),
               Change(2, "product.upsert", "ONIGIRI-S", {"sku": "ONIGIRI-S", "jan": ONIGIRI, "name": "おにぎり",
                                                         "price": 160, "tax_class": "reduced", "version": 0})]  # fmt: skip
    changes += [Change(3 + i, "asn.upsert", a["shipment_id"], {**a, "version": 0}) for i, a in enumerate(asns)]
    apply_page(db, "S001", ChangePage(0, len(changes), len(changes), changes))


ASN_OURS = {"shipment_id": "SHP-S001-1", "store": "S001", "epcs": OURS}
ASN_NEIGHBOUR = {"shipment_id": "SHP-S002-1", "store": "S002", "epcs": NEIGHBOUR}


async def run_until(config_path: Path, predicate, timeout: float = 20.0):
    config = load_config(str(config_path))
    stop = asyncio.Event()
    states: list[tuple[str, dict]] = []
    task = asyncio.create_task(service.run_service(config, stop, lambda state, **detail: states.append((state, detail))))
    try:
        async with asyncio.timeout(timeout):
            while not (result := predicate(states)):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    return result, states


def pending(db) -> list[store.InspectionRecord]:
    return store.list_inspections(db.conn, "S001", store.PENDING)


async def test_service_survives_an_unplug_mid_delivery_and_a_broken_profile(tmp_path: Path) -> None:
    config = write_store_config(tmp_path, "S001", "mqtt://127.0.0.1:1")
    db = edge_db.connect(tmp_path / "S001.db")
    seed(db, [ASN_OURS, ASN_NEIGHBOUR])
    link = tmp_path / "dock-reader"
    broken = tmp_path / "broken.toml"
    broken.write_text('[reader]\nport = "/dev/null"\nprotocol = "zebra"\n')
    simulator = ReaderSimulator("mercury", delivery_tags(), rate=400, link=link, seed=1, max_reads=len(delivery_tags()) * 4)
    simulator.start()
    try:
        add_dock(config, [write_profile(tmp_path, "dock", str(link)), broken], quiet_s=2.0)

        def halfway_then_done(states):
            if simulator.counters.reads_sent >= 40 and not getattr(simulator, "_replugged", False):
                simulator.power_cycle()  # unplug and plug back in: the transport reopens and reconfigures
                simulator._replugged = True
            return pending(db)

        (record,), states = await run_until(config, halfway_then_done)
    finally:
        simulator.stop()
    v = record.verdict
    assert record.shipment_id == "SHP-S001-1"
    assert sorted(v.missing) == sorted(OURS[-2:])
    assert v.unexpected == [STRANGER]
    assert [(c.epc, c.store) for c in v.wrong_store] == [(NEIGHBOUR[0], "S002")]
    assert len(v.matched) == len(OURS) - 2 and v.not_arrivals == 2  # the backroom tag and the weak one
    assert record.verdict_ms is not None and record.verdict_ms < 100
    readers = states[-1][1]["readers"]
    assert readers["dock"]["connects"] >= 2, "reconfigured after the power cycle"
    assert "zebra" in readers["broken"]["last_error"]
    assert (tmp_path / "inspections" / f"{record.inspection_id}.txt").exists()
    db.conn.close()


async def test_auto_accept_posts_a_clean_delivery_without_a_clerk(tmp_path: Path) -> None:
    config = write_store_config(tmp_path, "S001", "mqtt://127.0.0.1:1")
    db = edge_db.connect(tmp_path / "S001.db")
    seed(db, [ASN_OURS])
    link = tmp_path / "dock-reader"
    tags = [SimTag(epc, 1, -50) for epc in OURS]
    with ReaderSimulator("r2000", tags, rate=400, link=link, seed=2, max_reads=len(tags) * 3):
        add_dock(config, [write_profile(tmp_path, "dock", str(link), "r2000")], quiet_s=1.0, auto_accept=True)
        (record,), _ = await run_until(config, lambda _: store.list_inspections(db.conn, "S001", store.ACCEPTED))
    assert record.verdict.clean and record.decided_by == "auto"
    assert dict(db.conn.execute("SELECT sku, sum(delta) FROM stock_ledger GROUP BY sku")) == {"TEA-500": 20, "ONIGIRI-S": 10}
    db.conn.close()


async def test_no_dock_section_means_no_service(tmp_path: Path) -> None:
    config = load_config(str(write_store_config(tmp_path, "S001", "mqtt://127.0.0.1:1")))
    await asyncio.wait_for(service.run_service(config, asyncio.Event(), lambda *a, **k: None), 1)


# ---------------------------------------------------------------------------- the whole chain


@pytest.mark.timeout(90)
def test_received_stock_reaches_hq_once_through_mosquitto(tmp_path: Path, broker: Mosquitto, sqlite_url: str, capsys,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    central = Central(sqlite_url)
    (tmp_path / "products.csv").write_text(PRODUCTS, encoding="utf-8")
    import_products(central, tmp_path / "products.csv")
    config_path = provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url)
    provision_store(tmp_path / "S002", "S002", broker.url, sqlite_url)
    link = tmp_path / "dock-reader"
    add_dock(config_path, [write_profile(tmp_path, "dock", str(link))], quiet_s=1.0)
    config = load_config(str(config_path))
    db = edge_db.connect(config.database)
    add_store_clerks(config.database)
    pins_on_stdin(monkeypatch)

    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    simulator = None
    try:
        wait_until(lambda: db.conn.execute("SELECT count(*) FROM products").fetchone()[0] == 2, 20,
                   what="the store to bootstrap")  # fmt: skip
        asn_file = tmp_path / "asns.json"
        asn_file.write_text(json.dumps([ASN_OURS, ASN_NEIGHBOUR]))
        assert hq_asn.import_asns(central, asn_file).created == ["SHP-S001-1", "SHP-S002-1"]
        wait_until(lambda: db.conn.execute("SELECT count(*) FROM asns").fetchone()[0] == 2, 20,
                   what="both ASNs to reach the store")  # fmt: skip

        tags = delivery_tags()
        simulator = ReaderSimulator("mercury", tags, rate=300, link=link, seed=3, max_reads=len(tags) * 3).__enter__()
        (record,) = wait_until(lambda: pending(db), 30, what="the verdict")
        assert record.shipment_id == "SHP-S001-1" and len(record.verdict.missing) == 2

        # Two units missing: accepting the differences takes a manager (--clerk, PIN on stdin).
        assert main(["edge", "inspect", "accept", record.inspection_id, *AS_MANAGER, "--config", str(config_path)]) == 0
        capsys.readouterr()
        posted = {"TEA-500": 20, "ONIGIRI-S": 9}  # 20 + 10 expected, 2 onigiri missing, 1 stranger onigiri

        def hq_receipts():
            rows = central.all("SELECT sku, delta, store_seq FROM stock_ledger WHERE store_id = 'S001' AND reason = 'receipt'")
            return rows if len(rows) == 2 else None

        rows = wait_until(hq_receipts, 30, what="the receipt at HQ")
        assert {sku: delta for sku, delta, _ in rows} == posted
        wait_until(lambda: hq_asn.inspection_rows(central), 20, what="the inspection at HQ")
        (inspection,) = hq_asn.inspection_rows(central)
        assert (inspection["status"], inspection["summary"]["received_posted"]) == ("accepted", 29)
        assert hq_asn.asn_rows(central, "S001")[0]["status"] == "received"
        wait_until(lambda: db.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0, 20,
                   what="the store to forget acknowledged events")  # fmt: skip
        # Once: however often the link resent, HQ holds exactly the store's receipt entries.
        store_rows = db.conn.execute("SELECT sku, delta, store_seq FROM stock_ledger WHERE reason = 'receipt'").fetchall()
        assert sorted(rows) == sorted(store_rows)
        assert central.scalar("SELECT count(*) FROM dead_letters") == 0
    finally:
        if simulator is not None:
            simulator.stop()
        agent.terminate()
        aggregator.terminate()
        db.conn.close()
        central.close()
