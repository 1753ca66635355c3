"""Demo, issue 6: the member registered at Shibuya walks in with the member app; the clerk terminal
shows her arrival and HQ adds the visit to her history.

The walk is a recording (the `tenpo ble scan --record` format) made by the same generator the tests
use, with her real beacon secret from HQ, replayed into the running agent with `tenpo ble replay`.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING

from tenpo.cli import main as tenpo_main
from tenpo.cloud.visits.history import member_visits
from tenpo.edge import replica
from tenpo.edge.ble.arrivals import recent_arrivals
from tenpo.edge.ble.recording import make_member_arrival_recording
from tenpo.edge.outbox import get_meta

if TYPE_CHECKING:
    from tenpo.demo import Demo  # the demo imports its scenarios

REGISTRY = Path(__file__).resolve().parents[1] / "firmware-config" / "beacons.toml"
MINIMAL_REGISTRY = """[member_app]
ibeacon_uuid = "7e4b1c2a-9d3f-4a61-b8e5-0c2f6d9a4e17"
[presence]
scanner_zone = "counter"
[[zones]]
name = "counter"
[[coupon_rules]]
name = "welcome-back-30d"
kind = "first_visit"
days = 30
"""


def _clock(t: float) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%H:%M:%S")


def run(demo: Demo) -> None:
    central, db = demo.central, demo.dbs["S001"]
    assert central is not None
    demo.step("Shibuya turns on its Bluetooth beacons; the member's app secret came from HQ")
    member = replica.find_members(db, "090-1234-5678")[0]
    # The app's secret stays at HQ (the phone gets it from HQ); Shibuya holds only her day keys (issue 14).
    secret_hex = demo.check(
        f"{member.name}'s beacon secret is at HQ",
        lambda: central.scalar("SELECT beacon_secret FROM members WHERE member_id = ?", (member.member_id,)),
    )  # fmt: skip
    demo.check(
        "Shibuya holds her beacon day keys, not her secret",
        lambda: db.conn.execute("SELECT count(*) FROM beacon_keys WHERE member_id = ?", (member.member_id,)).fetchone()[0]
        and db.conn.execute("SELECT beacon_secret FROM members WHERE member_id = ?", (member.member_id,)).fetchone()[0]
        is None,
    )  # fmt: skip
    registry = demo.workdir / "S001" / "beacons.toml"
    registry.write_text(REGISTRY.read_text(encoding="utf-8") if REGISTRY.exists() else MINIMAL_REGISTRY, encoding="utf-8")
    config_path = demo.config_paths["S001"]
    if "[beacons]" not in config_path.read_text():
        with config_path.open("a", encoding="utf-8") as handle:
            handle.write('\n[beacons]\nregistry = "beacons.toml"\n')
    restarted = time.time()
    demo.stop_agent("S001")
    demo.start_agent("S001")
    service = demo.check(
        "the agent's beacon service is up (without a Bluetooth adapter it says so and carries on)",
        lambda: (r := json.loads(get_meta(db.conn, "service.beacons") or "{}")).get("at", 0) > restarted
        and r.get("state") in ("running", "unavailable") and r,
    )  # fmt: skip
    demo.say(f"    beacons: {service['state']}" + (f" ({service['reason']})" if service.get("reason") else ""))

    demo.step("She walks in, stands at the counter two minutes, walks out (a recording, replayed)")
    recording = demo.workdir / "S001" / "arrival.jsonl"
    # Recorded now: Shibuya holds her ids for the windows around now only (issue 14).
    lines = make_member_arrival_recording(bytes.fromhex(secret_hex), start_t=time.time())
    recording.write_text("\n".join(lines) + "\n", encoding="utf-8")
    demo.say(f"    {len(lines)} advertisements: her phone's rotating iBeacon id, an iPhone and a neighbour's beacon")
    output = io.StringIO()
    with redirect_stdout(output):
        status = tenpo_main(["ble", "replay", str(recording), "--config", str(config_path), "--speed", "0"])
    assert status == 0, "tenpo ble replay failed"
    for line in output.getvalue().splitlines():
        demo.say(f"    $ tenpo ble replay: {line}")

    arrival = demo.check(
        "the clerk terminal lists her arrival",
        lambda: next((a for a in recent_arrivals(db) if a.member_id == member.member_id and a.left_at), None),
    )  # fmt: skip
    demo.say(f"    clerk: {arrival.name} 様 ({arrival.kana}) arrived {_clock(arrival.arrived_at)}, "
             f"left {_clock(arrival.left_at)}, {arrival.dwell_s:.0f} s in store, {arrival.points} pt")  # fmt: skip

    visit = demo.check(
        "HQ has the visit in her history, with the welcome coupon",
        lambda: next((v for v in member_visits(central, member.member_id) if v.left_at is not None), None),
    )  # fmt: skip
    coupons = ", ".join(visit.coupons) or "none"
    demo.say(f"    HQ: {visit.store_id} {visit.store_name or ''} {_clock(visit.arrived_at)}, "
             f"dwell {visit.dwell_s:.0f} s, coupons: {coupons}")  # fmt: skip
