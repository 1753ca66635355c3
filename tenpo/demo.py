"""`tenpo demo`: a whole chain on this machine, showing what Tenpo does in a couple of minutes.

A private Mosquitto on a free port, one aggregator, two stores (Shibuya and Umeda) as real
processes. Each step prints what happened and checks it; any failed check exits 1.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenpo import demo_arrival, demo_checkout, demo_clerk, demo_dock
from tenpo.cloud.admin import import_products
from tenpo.cloud.db import Central
from tenpo.cloud.status import status_report
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.config import load_config
from tenpo.sandbox import Mosquitto, Process, aggregator_process, provision_store, store_process, wait_until

PRODUCTS = """sku,jan,name,price,tax_class
TEA-500,4901085089583,緑茶 500ml,150,reduced
ONIGIRI-S,4901234567894,おにぎり 鮭,160,reduced
TSHIRT-M,4560000000012,Tシャツ M 白,1980,standard
UMBRELLA,4560000000029,傘 65cm,1200,standard
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser("demo", help="run a whole chain locally: broker, HQ, two stores")
    demo.add_argument("--dir", type=Path, help="keep the demo's files here (default: a temporary folder)")
    demo.set_defaults(func=cmd_demo)


# Later parts of the story, each owned by its area, in the order they are told.
SCENARIOS: tuple[Callable[[Demo], None], ...] = (
    demo_checkout.run,  # issue 5: an outage during which Shibuya keeps selling
    demo_dock.run,  # issue 4: a delivery through the dock door
    demo_arrival.run,  # issue 6: a member arrives; the clerk and HQ see it
    demo_clerk.run,  # issue 7: a clerk account, and how to open the clerk terminal on these files
)


class Demo:
    """What a scenario gets: the running chain and ways to narrate and check."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[Process] = []
        self.broker: Mosquitto | None = None
        self.step_no = 0
        self.db_url = f"sqlite:///{workdir / 'hq' / 'central.db'}"
        self.central: Central | None = None
        self.config_paths: dict[str, Path] = {}
        self.agents: dict[str, Process] = {}
        self.dbs: dict[str, Any] = {}

    def say(self, text: str) -> None:
        print(text, flush=True)

    def step(self, title: str) -> None:
        self.step_no += 1
        self.say(f"\n[{self.step_no}] {title}")

    def check(self, what: str, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        started = time.monotonic()
        value = wait_until(predicate, timeout, what=what)
        self.say(f"    ok  {what} ({time.monotonic() - started:.2f}s)")
        return value

    def start(self, process: Process) -> Process:
        self.processes.append(process.start())
        return process

    def start_agent(self, store_id: str) -> Process:
        process = self.start(store_process(self.config_paths[store_id]))
        self.agents[store_id] = process
        return process

    def stop_agent(self, store_id: str) -> None:
        self.agents[store_id].terminate()

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            if process.alive():
                process.terminate()
        if self.broker is not None:
            self.broker.stop()


def run_demo(workdir: Path) -> int:
    demo = Demo(workdir)
    db_url = demo.db_url
    try:
        demo.step("HQ: a private MQTT broker, the central database and the product list")
        demo.broker = broker = Mosquitto(workdir).start()
        (workdir / "hq").mkdir(exist_ok=True)
        central = demo.central = Central(db_url)
        (workdir / "products.csv").write_text(PRODUCTS, encoding="utf-8")
        report = import_products(central, workdir / "products.csv")
        demo.say(f"    broker {broker.url}; {report.created} products imported")

        demo.step("Two stores provisioned: replica, Ed25519 key pair, registered at HQ")
        stores = {"S001": "Shibuya", "S002": "Umeda"}
        configs = demo.config_paths = {s: provision_store(workdir / s, s, broker.url, db_url) for s in stores}
        for store_id, path in configs.items():
            demo.say(f"    {store_id} {stores[store_id]}: config {path}")

        demo.step("Start the aggregator and both store agents")
        demo.start(aggregator_process(db_url, broker.url, workdir / "hq" / "aggregator.log"))
        for store_id in configs:
            demo.start_agent(store_id)
        db_a = edge_db.connect(load_config(str(configs["S001"])).database)
        db_b = edge_db.connect(load_config(str(configs["S002"])).database)
        demo.dbs = {"S001": db_a, "S002": db_b}
        demo.check("both stores online at HQ", lambda: all(s["online"] for s in status_report(central)["stores"]))
        demo.check("the product list reached both stores (bootstrap snapshot)",
                   lambda: all(d.conn.execute("SELECT count(*) FROM products").fetchone()[0] == 4
                               for d in (db_a, db_b)))  # fmt: skip

        demo.step("Shibuya registers a member at the counter (offline-capable, provisional id)")
        member_id = replica.register_member(
            db_a, "S001", name="佐藤 花子 様", kana="さとう はなこ", phone="090-1234-5678", email="Hanako.Sato@Example.JP"
        )
        demo.say(f"    new member {member_id}")
        found = demo.check("Umeda finds her by phone in another format",
                           lambda: replica.find_members(db_b, "+81 90 1234 5678"))  # fmt: skip
        member = found[0]
        demo.say(f"    Umeda sees: {member.name} ({member.kana}) {member.phone} {member.email}")

        demo.step("Umeda counts stock; Shibuya sees it")
        replica.adjust_stock(db_b, "TSHIRT-M", 12, "opening count")
        replica.adjust_stock(db_b, "UMBRELLA", 30, "opening count")
        replica.adjust_stock(db_a, "UMBRELLA", 5, "opening count")
        demo.check("Umeda's T-shirts visible from Shibuya",
                   lambda: [r for r in replica.stock_levels(db_a, "S001", "TSHIRT-M")
                            if r.store_id == "S002" and r.on_hand == 12])  # fmt: skip
        for row in replica.stock_levels(db_a, "S001", "UMBRELLA"):
            where = "here" if row.as_of is None else "replica"
            demo.say(f"    {row.store_id} {row.sku:<10} {row.on_hand:>4}  {row.name} ({where})")

        for scenario in SCENARIOS:
            scenario(demo)

        demo.step("Summary at HQ")
        demo.check("every store event applied",
                   lambda: all(s["backlog"] == 0 for s in status_report(central)["stores"]) or None)  # fmt: skip
        report_now = status_report(central)
        for s in report_now["stores"]:
            demo.say(f"    {s['store_id']}: online={s['online']} applied seq {s['last_applied_seq']} "
                     f"events {s['events_applied']} dead letters {s['dead_letters']}")  # fmt: skip
        totals = report_now["totals"]
        demo.say(f"    {totals['members']} member(s), {totals['events_applied']} events, "
                 f"{totals['dead_letters']} dead letters, change feed at {totals['latest_change']}")  # fmt: skip
        demo.say("\ndemo finished: all checks passed")
        return 0
    except AssertionError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.stop_all()


def cmd_demo(args: argparse.Namespace) -> int:
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
        return run_demo(args.dir.resolve())
    workdir = Path(tempfile.mkdtemp(prefix="tenpo-demo-"))
    try:
        return run_demo(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
