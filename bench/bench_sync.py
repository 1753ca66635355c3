"""Sync link figures, each printed next to what it is measured against in the same run.

- replay of a 100,000-event upstream backlog (store → broker → aggregator → ack) in events/s, next to
  raw paho QoS 1 publishes of the same payload sizes to the same broker;
- aggregator apply rate on SQLite and on PostgreSQL;
- bootstrap of 1,000,000 members (seconds until the members are usable, seconds until their name-search
  tokens are built too, peak RSS of the edge process), next to what sealing them alone costs on this
  machine in the same run; TENPO_BENCH_MEMBERS=100000 measures fewer and scales linearly,
  TENPO_BENCH_BEACONS=1 gives the members beacon secrets (the snapshot then carries two day keys each);
- idle RSS of `tenpo edge run`.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenpo.cloud.admin import add_store, import_products
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.apply_group import Waiting, apply_batches
from tenpo.cloud.db import Central
from tenpo.edge import bootstrap_bulk
from tenpo.edge import db as edge_db
from tenpo.edge.config import load_config
from tenpo.edge.membership import vault
from tenpo.edge.outbox import append_event, read_counter
from tenpo.sandbox import Mosquitto, aggregator_process, provision_store, store_process, wait_until
from tenpo.shared import crypto, pii
from tenpo.shared.mqtt import make_client
from tenpo.shared.protocol import Event, EventBatch

BACKLOG = 100_000
MEMBERS = 1_000_000
BOOT_MEMBERS = int(os.environ.get("TENPO_BENCH_MEMBERS", MEMBERS))  # a reduced run scales linearly to MEMBERS
BOOT_BEACONS = os.environ.get("TENPO_BENCH_BEACONS") == "1"  # members with beacon secrets: + the beacon_keys entity (issue 14)
SKUS = [f"SKU-{i:04d}" for i in range(200)]


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _payload(rng: random.Random) -> dict[str, object]:
    return {"sku": rng.choice(SKUS), "location": "floor", "delta": rng.choice((-1, 1, 2)), "reason": "cycle count", "ref": None}


def _products(workdir: Path) -> Path:
    path = workdir / "products.csv"
    path.write_text("sku,jan,name,price,tax_class\n" + "".join(f"{s},,商品 {s},100,standard\n" for s in SKUS))
    return path


def raw_qos1_rate(broker: Mosquitto, payloads: list[bytes]) -> float:
    client = make_client(f"bench-raw-{os.getpid()}")
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    connected.wait(10)
    return publish_rate(client, "bench/raw", payloads)


def publish_rate(client: Any, topic: str, payloads: list[bytes]) -> float:
    """QoS 1 publishes per second on a connected, looping client, until the broker acknowledged each;
    then the client is disconnected."""
    started = time.perf_counter()
    window: list = []  # paho's message ids wrap at 65,535: keep fewer than that outstanding
    for payload in payloads:
        window.append(client.publish(topic, payload, qos=1))
        if len(window) >= 20_000:
            window.pop(0).wait_for_publish(60)
    for info in window:
        info.wait_for_publish(60)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return len(payloads) / elapsed


def replay(workdir: Path, broker: Mosquitto) -> tuple[float, float]:
    db_url = f"sqlite:///{workdir / 'replay-central.db'}"
    central = Central(db_url)
    import_products(central, _products(workdir))
    config_path = provision_store(workdir / "replay", "R001", broker.url, db_url)
    config = load_config(str(config_path))
    store = edge_db.connect(config.database)
    rng = random.Random(1)
    sizes: list[bytes] = []
    with edge_db.transaction(store) as conn:
        for _ in range(BACKLOG):
            payload = _payload(rng)
            append_event(conn, "stock.adjusted", payload)
    for row in store.conn.execute("SELECT payload FROM outbox LIMIT 10000"):
        sizes.append(row[0].encode())
    raw = raw_qos1_rate(broker, sizes * (BACKLOG // len(sizes)))
    aggregator = aggregator_process(db_url, broker.url, workdir / "replay-agg.log").start()
    wait_until(lambda: central.scalar("SELECT value FROM counters WHERE name = 'change'") >= 0, 10)
    agent = store_process(config_path)
    started = time.perf_counter()
    agent.start()
    wait_until(lambda: read_counter(store.conn, "acked") == BACKLOG, 600, interval=0.02, what="backlog acked")
    ours = BACKLOG / (time.perf_counter() - started)
    agent.terminate()
    aggregator.terminate()
    return ours, raw


def apply_rate(db_url: str, events: int = 50_000, batch: int = 500, window: int = 4) -> float:
    """Events/s of the aggregator's apply alone (no MQTT, no signature checks): one store's backlog whose batches
    wait ``window`` at a time in the aggregator's queue, as the store agent's window of in-flight batches does
    when HQ is behind, each window applied in one transaction (cloud/apply_group.py). ``window=1``: one batch per
    transaction, what a lone batch gets. The time a window's acks take to reach the store is not in it."""
    central = Central(db_url)
    workdir = Path(tempfile.mkdtemp())
    crypto.generate_keypair(workdir / "k", workdir / "k.pub")
    add_store(central, "A001", (workdir / "k.pub").read_text())
    rng = random.Random(2)
    all_events = [Event(i, uuid.uuid4().hex, "stock.adjusted", 1, i << 16, _payload(rng)) for i in range(1, events + 1)]
    batches = [EventBatch("bench", all_events[i : i + batch]) for i in range(0, events, batch)]
    started = time.perf_counter()
    for i in range(0, len(batches), window):
        if window == 1:
            apply_batch(central, "A001", batches[i])
        else:
            apply_batches(central, [Waiting("A001", waiting) for waiting in batches[i : i + window]])
    rate = events / (time.perf_counter() - started)
    central.close()
    return rate


def _cpu_s(pid: int, children: bool = True) -> float:
    """User + system CPU seconds a process has used (its finished children's too): what a loaded machine
    does not inflate."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11 : 15 if children else 13]) / os.sysconf("SC_CLK_TCK")


class _Edge:
    """Samples of the edge process and its bootstrap worker (issue 19 §5), at each poll: peak RSS (VmHWM, the
    two summed: an upper bound, the pages they share since the fork counted twice), peak of their summed
    proportional set sizes (shared pages counted once), the worker's CPU seconds as last seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self.pss_kb = 0
        self.agent_kb = 0  # the edge process's own peak RSS
        self.worker_cpu: dict[int, float] = {}

    def sample(self) -> None:
        tasks = Path(f"/proc/{self.pid}/task").iterdir()
        children = [int(c) for task in tasks for c in (task / "children").read_text().split()]
        peak, pss = _rss_kb(self.pid, "VmHWM"), _pss_kb(self.pid)
        for child in children:
            with contextlib.suppress(OSError):
                peak, pss = peak + _rss_kb(child, "VmHWM"), pss + _pss_kb(child)
                self.worker_cpu[child] = _cpu_s(child)
        self.peak_kb, self.pss_kb = max(self.peak_kb, peak), max(self.pss_kb, pss)
        self.agent_kb = _rss_kb(self.pid, "VmHWM")


def _pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class Boot:
    usable: float  # seconds until the replica says it is bootstrapped: members, exact lookups, the feed resumed
    built: float  # seconds until the name-search tokens are in place too (issue 19 §5)
    peak_kb: int  # peak RSS of the edge process plus its bootstrap worker's (shared pages twice)
    edge_cpu_usable: float  # CPU seconds the edge process used until usable
    edge_cpu_built: float  # ... until built
    hq_cpu: float  # CPU seconds of the aggregator over the whole bootstrap
    pss_kb: int = 0  # peak proportional set size of the edge process and its worker together
    worker_cpu: float = 0.0  # CPU seconds of the bootstrap worker (in edge_cpu_* once reaped; issue 19 §5)
    agent_cpu_usable: float = 0.0  # CPU seconds of the edge process itself until usable, its worker's not
    agent_kb: int = 0  # peak RSS of the edge process alone


def bootstrap(workdir: Path, broker: Mosquitto, members: int = MEMBERS, beacons: bool = False) -> Boot:
    db_url = f"sqlite:///{workdir / 'boot-central.db'}"
    central = Central(db_url)
    now = time.time()
    with central.transaction():
        for start in range(0, members, 100_000):
            central.executemany(
                "INSERT INTO members(member_id, name, kana, phone, email, card_no, beacon_secret, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(f"HQ-{i:07d}", f"会員 {i}", f"カイイン{i}", f"+8190{10_000_000 + i:08d}", f"m{i}@example.jp",
                  f"C{i:09d}", os.urandom(16).hex() if beacons else None, now, now)
                 for i in range(start, min(start + 100_000, members))],
            )  # fmt: skip
    config_path = provision_store(workdir / "boot", "B001", broker.url, db_url)
    config = load_config(str(config_path))
    aggregator = aggregator_process(db_url, broker.url, workdir / "boot-agg.log").start()
    store = edge_db.connect(config.database)
    agent = store_process(config_path)
    started = time.perf_counter()
    agent.start()
    edge = _Edge(agent.popen.pid)  # type: ignore[union-attr]

    def meta(key: str) -> bool:
        edge.sample()
        return store.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone() is not None

    hq_before = _cpu_s(aggregator.popen.pid)  # type: ignore[union-attr]
    wait_until(lambda: meta("bootstrapped"), 3600, interval=0.1, what=f"{members:,}-member bootstrap")
    usable, cpu_usable = time.perf_counter() - started, _cpu_s(agent.popen.pid)  # type: ignore[union-attr]
    own_usable = _cpu_s(agent.popen.pid, children=False)  # type: ignore[union-attr]
    # issue 19 §5: the name-search tokens are moved after the bootstrap, while the agent serves
    wait_until(lambda: not meta(bootstrap_bulk.PENDING), 3600, interval=0.1, what="name-search tokens")
    built, cpu_built = time.perf_counter() - started, _cpu_s(agent.popen.pid)  # type: ignore[union-attr]
    edge.sample()
    hq_cpu = _cpu_s(aggregator.popen.pid) - hq_before  # type: ignore[union-attr]
    agent.terminate()
    aggregator.terminate()
    return Boot(usable, built, edge.peak_kb, cpu_usable, cpu_built, hq_cpu, edge.pss_kb, sum(edge.worker_cpu.values()),
                own_usable, edge.agent_kb)  # fmt: skip


def sealing_floor(members: int, sample: int = 20_000) -> float:
    """Seconds the store's sealing alone takes for ``members`` until they are usable (a sample, scaled): per
    member six AES-GCM values and five blind indexes (the name tokens' HMACs come after, issue 19 §5), in
    this process, with no database and no network, in chunks of the snapshot's size as the bootstrap seals them."""
    codec = pii.Codec(os.urandom(32))
    sample = min(sample, members)
    ids = [f"HQ-{i:07d}" for i in range(sample)]
    people = [vault.Personal(f"会員 {i}", f"カイイン{i}", f"+8190{10_000_000 + i:08d}", f"m{i}@example.jp", f"C{i:09d}")
              for i in range(sample)]  # fmt: skip
    started = time.perf_counter()
    for start in range(0, sample, 5000):
        vault.sealed_rows(codec, ids[start : start + 5000], people[start : start + 5000])
    return (time.perf_counter() - started) * members / sample


def idle_rss(workdir: Path, broker: Mosquitto) -> int:
    """A store of a small chain (a few products and members), connected and caught up, at rest."""
    db_url = f"sqlite:///{workdir / 'idle-central.db'}"
    import_products(Central(db_url), _products(workdir))
    small = provision_store(workdir / "idle", "I001", broker.url, db_url)
    aggregator = aggregator_process(db_url, broker.url, workdir / "idle-agg.log").start()
    idle_agent = store_process(small).start()
    idle_db = edge_db.connect(load_config(str(small)).database)
    wait_until(lambda: idle_db.conn.execute("SELECT 1 FROM meta WHERE key = 'bootstrapped'").fetchone(), 60)
    threading.Event().wait(3.0)  # let it settle: we measure resting memory, not start-up
    idle = _rss_kb(idle_agent.popen.pid, "VmRSS")  # type: ignore[union-attr]
    idle_agent.terminate()
    aggregator.terminate()
    return idle


def run() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="tenpo-bench-sync-"))
    broker = Mosquitto(workdir).start()
    try:
        ours, raw = replay(workdir, broker)
        print(f"sync replay of {BACKLOG:,} events: {ours:,.0f} events/s  vs raw paho QoS 1 publishes: {raw:,.0f} msg/s"
              f"  (ratio {ours / raw:.2f}, target >= 0.5)")  # fmt: skip
        sqlite_rate = apply_rate(f"sqlite:///{workdir / 'apply.db'}")
        print(f"aggregator apply on SQLite: {sqlite_rate:,.0f} events/s")
        pg_url = _throwaway_postgres()
        if pg_url:
            try:
                # One measurement for both figures: a second run on the same database would replay applied seqs.
                pg_rate = apply_rate(pg_url[0])
                print(
                    f"aggregator apply on PostgreSQL: {pg_rate:,.0f} events/s  (vs SQLite above: {pg_rate / sqlite_rate:.2f}x)"
                )
            finally:
                pg_url[1]()
        boot = bootstrap(workdir, broker, BOOT_MEMBERS, BOOT_BEACONS)
        load = os.getloadavg()[0]
        idle_kb = idle_rss(workdir, broker)
        scale = MEMBERS / BOOT_MEMBERS
        scaled = "" if scale == 1 else f" (measured at {BOOT_MEMBERS:,}: {boot.usable:.1f} s, scaled linearly)"
        with_beacons = ", members with beacon secrets (+ two day keys each)" if BOOT_BEACONS else ""
        print(f"bootstrap of {MEMBERS:,} members{with_beacons}: {boot.usable * scale:.1f} s to members usable "
              f"(target < 30 s){scaled}, {boot.built * scale:.1f} s to all indexes built (name search too), edge peak "
              f"RSS {boot.peak_kb / 1024:.0f} MB with its bootstrap worker's (target < 150 MB; its own "
              f"{boot.agent_kb / 1024:.0f} MB; the pair's PSS, pages shared counted once: {boot.pss_kb / 1024:.0f} MB); "
              f"CPU seconds until usable of the agent itself "
              f"{boot.agent_cpu_usable * scale:.1f}, of its worker {boot.worker_cpu * scale:.1f}; "
              f"CPU seconds of the edge process "
              f"{boot.edge_cpu_usable * scale:.1f} / {boot.edge_cpu_built * scale:.1f}, of HQ's aggregator "
              f"{boot.hq_cpu * scale:.1f}; the sealing until usable alone on this machine now: {sealing_floor(MEMBERS):.1f} s; "
              f"load average {load:.1f} ({os.cpu_count()} CPUs)")  # fmt: skip
        print(f"idle `tenpo edge run` RSS: {idle_kb / 1024:.0f} MB (target < 60 MB)")
    finally:
        broker.stop()


def _throwaway_postgres() -> tuple[str, object] | None:
    import psycopg

    url = os.environ.get("TENPO_TEST_POSTGRES_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")
    name = f"tenpo_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        print(f"aggregator apply on PostgreSQL: not measured ({exc})")
        return None

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url.rsplit("/", 1)[0] + "/" + name, drop


if __name__ == "__main__":
    run()
