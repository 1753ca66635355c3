"""The sync link end to end: real Mosquitto, real agent and aggregator processes, kills and outages.

Each test checks what HQ's operator would check: every store event applied exactly once, in the
store's order, and HQ's totals equal to the store's.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tenpo.cli import main
from tenpo.cloud.admin import import_products
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.agent import init_store
from tenpo.edge.config import load_config
from tenpo.edge.outbox import append_event, read_counter
from tenpo.edge.sync import SyncLink
from tenpo.sandbox import Mosquitto, aggregator_process, provision_store, store_process, wait_until, write_store_config
from tenpo.shared import crypto
from tenpo.shared.mqtt import make_client
from tenpo.shared.protocol import Envelope, EventBatch, decode, up_topic

SKUS = ("A1", "B2", "C3")


@pytest.fixture
def chain(tmp_path: Path, broker: Mosquitto, sqlite_url: str):
    """HQ with a product list, one provisioned store; processes are started by each test."""
    products = tmp_path / "products.csv"
    products.write_text("sku,jan,name,price,tax_class\nA1,4901234567894,緑茶 500ml,150,reduced\n"
                        "B2,,Tシャツ M,1980,standard\nC3,,靴下,500,standard\n")  # fmt: skip
    central = Central(sqlite_url)
    import_products(central, products)
    config_path = provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url)
    config = load_config(str(config_path))
    yield config_path, config, central
    central.close()


def hq_applied(central: Central, store_id: str = "S001") -> int:
    return int(central.scalar("SELECT last_applied_seq FROM stores WHERE store_id = ?", (store_id,), 0))


def hq_totals(central: Central, store_id: str = "S001") -> dict[str, int]:
    rows = central.all("SELECT sku, sum(delta) FROM stock_ledger WHERE store_id = ? GROUP BY sku", (store_id,))
    return {sku: int(total) for sku, total in rows}


def store_totals(db) -> dict[str, int]:
    rows = db.conn.execute("SELECT sku, sum(delta) FROM stock_ledger GROUP BY sku").fetchall()
    return {sku: int(total) for sku, total in rows}


def assert_exactly_once_in_order(central: Central, last_seq: int, store_id: str = "S001") -> None:
    seqs = [row[0] for row in central.all("SELECT seq FROM events WHERE store_id = ? ORDER BY seq", (store_id,))]
    assert seqs == list(range(1, last_seq + 1))
    ledger = [
        row[0] for row in central.all("SELECT store_seq FROM stock_ledger WHERE store_id = ? ORDER BY id", (store_id,))
    ]
    assert ledger == sorted(ledger), "HQ applied the store's events in the store's order"
    assert len(ledger) == len(set(ledger)), "no event applied twice"


def wait_for_products(db) -> None:
    wait_until(lambda: db.conn.execute("SELECT count(*) FROM products").fetchone()[0] == len(SKUS), 20,
               what="the product list to reach the store")  # fmt: skip


def test_broker_outage_while_the_store_writes_1000_events(chain, broker: Mosquitto, sqlite_url: str, tmp_path) -> None:
    config_path, config, central = chain
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    db = edge_db.connect(config.database)
    wait_for_products(db)
    replica.adjust_stock(db, "A1", 1, "opening count")
    wait_until(lambda: replica.sync_status(db)["outbox_pending"] == 0, 20, what="first event acknowledged")

    broker.stop()
    rng = random.Random(3)
    for _ in range(1000):
        replica.adjust_stock(db, rng.choice(SKUS), rng.choice((-2, -1, 1, 3)), "cycle count")
    assert replica.sync_status(db)["outbox_pending"] == 1000, "the outbox holds everything while the broker is away"
    broker.start()

    last = read_counter(db.conn, "outbox")
    wait_until(lambda: hq_applied(central) == last, 60, what="HQ to apply the backlog")
    assert_exactly_once_in_order(central, last)
    assert hq_totals(central) == store_totals(db)
    wait_until(lambda: replica.sync_status(db)["outbox_pending"] == 0, 20, what="the store to forget acked events")
    assert agent.terminate() == 0
    aggregator.terminate()


def test_agent_killed_at_random_moments_during_a_burst(chain, broker: Mosquitto, sqlite_url: str, tmp_path) -> None:
    config_path, config, central = chain
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    db = edge_db.connect(config.database)
    agent = store_process(config_path).start()
    wait_for_products(db)

    stop = threading.Event()

    def clerk_writes() -> None:  # another process's writes would look the same to the agent
        writer = edge_db.connect(config.database)
        rng = random.Random(11)
        while not stop.is_set():
            replica.adjust_stock(writer, rng.choice(SKUS), rng.choice((-1, 1, 2)), "burst")
        writer.conn.close()

    writer = threading.Thread(target=clerk_writes)
    writer.start()
    rng = random.Random(5)
    kills = 0
    try:
        while kills < 20:
            threading.Event().wait(rng.uniform(0.2, 0.9))  # random moment within the burst
            agent.kill()
            kills += 1
            agent = store_process(config_path).start()
    finally:
        stop.set()
        writer.join()
    last = read_counter(db.conn, "outbox")
    assert last > 100, "the burst wrote while the agent was being killed"
    wait_until(lambda: hq_applied(central) == last, 90, what="HQ to catch up after 20 kills")
    assert_exactly_once_in_order(central, last)
    assert hq_totals(central) == store_totals(db)
    agent.terminate()
    aggregator.terminate()


def test_aggregator_killed_while_applying(chain, broker: Mosquitto, sqlite_url: str, tmp_path) -> None:
    config_path, config, central = chain
    db = edge_db.connect(config.database)
    agent = store_process(config_path).start()
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    wait_for_products(db)
    aggregator.kill()
    rng = random.Random(9)
    with edge_db.transaction(db) as conn:  # a big backlog in few transactions, so HQ is busy applying
        for _ in range(30000):
            sku, delta = rng.choice(SKUS), rng.choice((-1, 1, 4))
            seq = append_event(
                conn, "stock.adjusted", {"sku": sku, "delta": delta, "reason": "bulk", "location": "floor"}
            )
            conn.execute("INSERT INTO stock_ledger(sku, location, delta, reason, store_seq, created_at) "
                         "VALUES (?, 'floor', ?, 'bulk', ?, 0)", (sku, delta, seq))  # fmt: skip
    last = read_counter(db.conn, "outbox")
    partial_kills = 0
    for round_no in range(4):
        aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
        before = hq_applied(central)
        wait_until(
            lambda before=before: hq_applied(central) > before,
            30,
            interval=0.01,
            what=f"HQ applying (round {round_no})",
        )
        aggregator.kill()  # mid-stream: some batches applied, some in flight
        partial_kills += hq_applied(central) < last
    assert partial_kills >= 3, "the aggregator was killed before it finished"
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    wait_until(lambda: hq_applied(central) == last, 90, what="HQ to finish after the kills")
    assert_exactly_once_in_order(central, last)
    assert hq_totals(central) == store_totals(db)
    agent.terminate()
    aggregator.terminate()


def test_edge_status_and_doctor_show_the_clock_skew_measured_on_hqs_acks(
    chain, broker, sqlite_url, tmp_path, capsys
) -> None:
    config_path, config, central = chain

    def status() -> dict:
        assert main(["edge", "status", "--config", str(config_path), "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    assert status()["clock_skew"] is None, "no ack from HQ yet"
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    db = edge_db.connect(config.database)
    wait_for_products(db)
    replica.adjust_stock(db, "A1", 1, "opening count")  # an event, so HQ sends an ack
    skew = wait_until(lambda: status()["clock_skew"], 20, what="the skew recorded from HQ's ack")
    assert abs(skew["skew_s"]) < 1.0, f"one machine, one clock: {skew}"
    assert main(["edge", "status", "--config", str(config_path)]) == 0
    assert "HQ's clock is" in capsys.readouterr().out
    main(["doctor", "--config", str(config_path), "--json"])
    clock = next(c for c in json.loads(capsys.readouterr().out)["checks"] if c["name"] == "clock")
    assert clock["status"] == "green" and "HQ's clock is" in clock["detail"]
    agent.terminate()
    aggregator.terminate()


def test_sigterm_stops_the_agent_within_5_seconds_and_hq_sees_it_offline(chain, broker, sqlite_url, tmp_path) -> None:
    config_path, config, central = chain
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    online = lambda: central.scalar("SELECT online FROM stores WHERE store_id = 'S001'")  # noqa: E731
    wait_until(lambda: online() == 1, 20, what="birth recorded at HQ")
    import time

    started = time.monotonic()
    assert agent.terminate(timeout=5) == 0
    assert time.monotonic() - started < 5
    wait_until(lambda: online() == 0, 10, what="death recorded at HQ")
    aggregator.terminate()


def test_will_marks_a_killed_store_offline(chain, broker, sqlite_url, tmp_path) -> None:
    config_path, config, central = chain
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    online = lambda: central.scalar("SELECT online FROM stores WHERE store_id = 'S001'")  # noqa: E731
    wait_until(lambda: online() == 1, 20, what="birth recorded at HQ")
    agent.kill()  # no goodbye: the broker publishes the Will when the connection drops
    wait_until(lambda: online() == 0, 10, what="the Will to mark the store offline")
    agent = store_process(config_path).start()
    wait_until(lambda: online() == 1, 20, what="the next birth")
    agent.terminate()
    aggregator.terminate()


def test_hq_restored_from_an_old_backup_raises_an_alert_at_the_store(
    chain, broker, sqlite_url, tmp_path, capsys
) -> None:
    import sqlite3

    config_path, config, central = chain
    central_path = Path(sqlite_url.removeprefix("sqlite:///"))
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    db = edge_db.connect(config.database)
    wait_for_products(db)
    acked = lambda: read_counter(db.conn, "acked")  # noqa: E731
    for _ in range(3):
        replica.adjust_stock(db, "A1", 1, "count")
    wait_until(lambda: acked() == 3, 20, what="three events acknowledged")
    backup = tmp_path / "backup.db"
    with sqlite3.connect(central_path) as source, sqlite3.connect(backup) as target:
        source.backup(target)
    for _ in range(3):
        replica.adjust_stock(db, "A1", 1, "count")
    wait_until(lambda: acked() == 6, 20, what="six events acknowledged (the store forgot them)")

    aggregator.kill()
    central.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{central_path}{suffix}").unlink(missing_ok=True)
    backup.rename(central_path)
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    replica.adjust_stock(db, "A1", 1, "count")

    def alerts() -> list[
        str
    ]:  # `tenpo edge status` in this process: polling it as a command starts an interpreter each time
        assert main(["edge", "status", "--json", "--config", str(config_path)]) == 0
        return json.loads(capsys.readouterr().out)["alerts"]

    found = wait_until(alerts, 40, interval=0.5, what="the store to notice HQ lost events it had acknowledged")
    assert found == ["HQ lost acknowledged events 4..6"]
    assert agent.alive()
    agent.terminate()
    aggregator.terminate()


async def test_a_halved_oversized_batch_still_tells_hq_the_backlog(tmp_path: Path, broker: Mosquitto) -> None:
    """HQ shows each store's backlog from its batches; halving a batch that is too big must not zero it."""
    config = load_config(str(write_store_config(tmp_path / "S001", "S001", broker.url, batch_size=2000)))
    db = init_store(config)
    with edge_db.transaction(db) as conn:  # 2000 events of 600 bytes: 1.2 MB, over the 512 KiB batch limit
        for _ in range(2000):
            append_event(conn, "stock.adjusted", {"sku": "A1", "delta": 1, "reason": "x" * 250, "ref": "y" * 250})
    batches: list[EventBatch] = []
    subscribed, arrived = threading.Event(), threading.Event()
    hq = make_client("hq-spy")
    hq.on_connect = lambda client, *args: client.subscribe(up_topic("S001", "events"), 1)
    hq.on_subscribe = lambda *args: subscribed.set()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        batches.append(decode(decode(message.payload, Envelope).body, EventBatch))
        arrived.set()

    hq.on_message = on_message
    hq.connect("127.0.0.1", broker.port)
    hq.loop_start()
    assert subscribed.wait(10)

    stop = asyncio.Event()
    link = SyncLink(config, db, crypto.load_private_key(config.private_key))
    running = asyncio.create_task(link.run(stop))
    assert await asyncio.to_thread(arrived.wait, 20), "the first batch reached HQ"
    stop.set()
    await running
    hq.loop_stop()
    db.conn.close()
    first = batches[0]
    assert 1 <= len(first.events) < 2000, "the batch was halved to fit"
    assert first.backlog == 2000 - first.events[-1].seq, "the events still to send after this batch"
