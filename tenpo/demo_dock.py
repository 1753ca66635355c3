"""Demo scenario (issue 4): a delivery through Shibuya's dock door.

HQ sends two ASNs (Shibuya's and Umeda's); a simulated M6E Nano on a pseudo-terminal reads the
delivery at Shibuya's door, including one tag from Umeda's delivery at the next dock; the agent
closes the session when the door goes quiet, the verdict prints, the clerk accepts, the stock moves
and HQ shows the receipt.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tenpo.cloud.asn import admin as hq_asn
from tenpo.edge import replica
from tenpo.edge.config import load_config
from tenpo.edge.inspection import store
from tenpo.edge.inspection.config import dock_settings
from tenpo.edge.inspection.report import render_text, write_reports
from tenpo.edge.rfid.simulator import ReaderSimulator, SimTag
from tenpo.shared.epc import encode_sgtin96

if TYPE_CHECKING:
    from tenpo.demo import Demo

TEA, ONIGIRI = "4901085089583", "4901234567894"  # the demo product list's JANs


def run(demo: Demo) -> None:
    central, db = demo.central, demo.dbs["S001"]
    assert central is not None
    shibuya = [encode_sgtin96(TEA, s) for s in range(1, 25)] + [encode_sgtin96(ONIGIRI, s) for s in range(1, 13)]
    umeda = [encode_sgtin96(TEA, s) for s in range(501, 513)]

    demo.step("Shibuya's dock door: an RFID reader (simulated M6E Nano on a pseudo-terminal) in the agent")
    link = demo.workdir / "S001-dock-reader"
    profile = demo.workdir / "S001-dock.toml"
    profile.write_text(f'[reader]\nname = "dock-1"\nport = "{link}"\nprotocol = "mercury"\nregion = "JP"\n'
                       "tx_power_dbm = {1 = 22.0}\nantennas = {door = 1, inside = 2}\n")  # fmt: skip
    config_path = demo.config_paths["S001"]
    config_path.write_text(config_path.read_text()
                           + f'\n[dock]\nreaders = ["{profile}"]\nquiet_s = 1.5\nrssi_min_dbm = -80\n')  # fmt: skip
    tags = [SimTag(epc, 1, -52) for epc in shibuya[:-1]]  # one onigiri did not make it onto the truck
    tags.append(SimTag(umeda[0], 1, -68))  # Umeda's delivery at the next door, read through the wall
    tags.append(SimTag(encode_sgtin96(ONIGIRI, 900), 2, -45))  # backroom stock by the inside antenna
    simulator = ReaderSimulator("mercury", tags, rate=300, link=link, seed=4, max_reads=len(tags) * 3)
    demo.stop_agent("S001")
    demo.start_agent("S001")
    demo.say(f"    reader profile {profile.name}: port {link}, door antenna 1, inside antenna 2")

    demo.step("HQ sends the ASNs: 36 items for Shibuya, 12 for Umeda (every store keeps both)")
    asn_file = demo.workdir / "asns.json"
    asn_file.write_text(json.dumps([{"shipment_id": "SHP-20260105-S001", "store": "S001", "epcs": shibuya},
                                    {"shipment_id": "SHP-20260105-S002", "store": "S002", "epcs": umeda}]))  # fmt: skip
    report = hq_asn.import_asns(central, asn_file)
    demo.say(f"    imported {', '.join(report.created)}")
    demo.check("both ASNs reached Shibuya", lambda: len(store.list_asns(db.conn)) == 2)

    demo.step("The truck unloads at Shibuya's door; the reader streams tag reads")
    simulator.start()
    try:
        (record,) = demo.check("verdict ready after the door went quiet",
                               lambda: store.list_inspections(db.conn, "S001", store.PENDING), timeout=30)  # fmt: skip
    finally:
        simulator.stop()
    for line in render_text(record).splitlines()[:14]:
        demo.say(f"    {line}")
    verdict = record.verdict
    assert len(verdict.missing) == 1 and [c.store for c in verdict.wrong_store] == ["S002"], "verdict"

    demo.step("The clerk accepts: the received stock goes into the ledger and the outbox together")
    before = {r.sku: r.on_hand for r in replica.stock_levels(db, "S001") if r.as_of is None}
    accepted = store.accept(db, "S001", record.inspection_id, by="1001")  # a clerk id, as `edge inspect accept --clerk` records
    paths = write_reports(accepted, dock_settings(load_config(str(config_path))).reports)
    for got in accepted.receipt:
        demo.say(f"    {got.sku:<10} {before.get(got.sku, 0):>3} -> {before.get(got.sku, 0) + got.qty:>3}  (+{got.qty})")
    demo.say(f"    reports: {', '.join(p.name for p in paths)}")

    demo.step("HQ shows the receipt and the inspection")
    demo.check("HQ applied the receipt",
               lambda: central.scalar(
                   "SELECT count(*) FROM stock_ledger WHERE store_id = 'S001' AND reason = 'receipt'") == 2)  # fmt: skip
    (row,) = demo.check("the inspection is listed at HQ", lambda: hq_asn.inspection_rows(central, "S001"))
    summary = row["summary"]
    demo.say(f"    {row['inspection_id']} {row['shipment_id']} {row['status']}: received {summary['received_posted']}, "
             f"missing {summary['missing']}, wrong-store {summary['wrong_store']}")  # fmt: skip
    demo.check("the ASN is marked received at HQ",
               lambda: hq_asn.asn_rows(central, "S001")[0]["status"] == "received")  # fmt: skip
