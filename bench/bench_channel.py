"""Channel API figures (docs/channel.md), each printed next to its limit or reference, same broker, same run:

- stock query p50/p99 through the client: one SKU across every store, HQ holding 1,000 SKUs x 100 stores
  (100,000 stock levels, some reserved), against a real aggregator process on a private Mosquitto
  (limit: p99 < 100 ms, a web page's budget for one call);
- reservation round trip p50/p99, channel -> HQ -> store agent (confirms) -> HQ -> channel, with a real store
  agent (limit: p99 < 2 s, well inside the 5 s a reserve waits by default);
- beside both: a bare MQTT 5 request/response round trip on the same broker (an echo responder), the floor.

Smaller run: TENPO_BENCH_CHANNEL_SKUS, TENPO_BENCH_CHANNEL_STORES, TENPO_BENCH_CHANNEL_ROUNDS.
Run: .venv/bin/python -m bench.bench_channel
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tenpo.channel import Client, no_delay
from tenpo.cloud.admin import import_products
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.sandbox import Mosquitto, aggregator_process, provision_store, store_process, wait_until

SKUS = int(os.environ.get("TENPO_BENCH_CHANNEL_SKUS", "1000"))
STORES = int(os.environ.get("TENPO_BENCH_CHANNEL_STORES", "100"))
ROUNDS = int(os.environ.get("TENPO_BENCH_CHANNEL_ROUNDS", "300"))
RESERVATIONS = max(20, ROUNDS // 6)
STOCK_LIMIT_MS, RESERVE_LIMIT_MS = 100.0, 2000.0


def pct(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)]


def seed(central: Central, workdir: Path) -> None:
    """1,000 products, 100 stores (S001 is a real one), a stock level for every pair, some reserved."""
    products = workdir / "products.csv"
    products.write_text("sku,jan,name,price,tax_class\n" + "".join(f"SKU{n:05d},,item {n},{500 + n},standard\n"
                                                                 for n in range(SKUS)))  # fmt: skip
    import_products(central, products)
    now = time.time()
    rng = random.Random(18)
    with central.transaction():
        central.executemany("INSERT INTO stores(store_id, name, public_key, registered_at, last_seen, online)"
                            " VALUES (?, ?, 'none', ?, ?, 1) ON CONFLICT(store_id) DO NOTHING",
                            [(f"S{s:03d}", f"Store {s}", now, now - rng.random() * 300)
                             for s in range(2, STORES + 1)])  # fmt: skip
        central.executemany("INSERT INTO stock_levels(store_id, sku, on_hand, as_of) VALUES (?, ?, ?, ?)",
                            [(f"S{s:03d}", f"SKU{n:05d}", rng.randint(0, 40), now)
                             for s in range(2, STORES + 1) for n in range(SKUS)])  # fmt: skip
        central.executemany(
            "INSERT INTO reservations(reservation_id, channel, store_id, sku, qty, state, hold_s, expires_at, created_at,"
            " updated_at) VALUES (?, 'web', ?, ?, 1, 'confirmed', 3600, ?, ?, ?)",
            [(f"B{n:07d}", f"S{rng.randint(2, STORES):03d}", f"SKU{rng.randrange(SKUS):05d}", now + 3600, now, now)
             for n in range(SKUS * STORES // 100)],
        )  # fmt: skip


def bare_round_trip(broker: Mosquitto, rounds: int) -> list[float]:
    """An echo responder and a requester on the same broker: MQTT 5 request/response and nothing else."""
    echo = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-echo", protocol=mqtt.MQTTv5)
    asker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-asker", protocol=mqtt.MQTTv5)

    def answer(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = message.properties.CorrelationData
        client.publish(message.properties.ResponseTopic, message.payload, qos=1, properties=props)

    got = threading.Event()
    for client in (echo, asker):
        client.on_connect = lambda c, *args: no_delay(c)
    echo.on_message = answer
    asker.on_message = lambda c, u, m: got.set()
    ready = threading.Semaphore(0)
    for client, topic in ((echo, "bench/req"), (asker, "bench/res")):
        client.on_subscribe = lambda *args: ready.release()
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        client.subscribe(topic, qos=1)
    for _ in range(2):
        assert ready.acquire(timeout=10)
    samples = []
    for n in range(rounds):
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "bench/res"
        props.CorrelationData = n.to_bytes(4, "big")
        got.clear()
        started = time.perf_counter()
        asker.publish("bench/req", b'{"sku":"SKU00001"}', qos=1, properties=props)
        assert got.wait(5)
        samples.append((time.perf_counter() - started) * 1000)
    for client in (echo, asker):
        client.loop_stop()
        client.disconnect()
    return samples


def nodelay(broker: Mosquitto) -> Mosquitto:
    """Mosquitto's ``set_tcp_nodelay true`` (docs/channel.md): without it Nagle's algorithm and the client's
    delayed ACK hold each small answer ~40 ms."""
    with broker.config.open("a") as config:
        config.write("set_tcp_nodelay true\n")
    return broker


def nagle_floor(workdir: Path, rounds: int) -> list[float]:
    """The same bare round trip on a broker left at Mosquitto's default (Nagle on)."""
    broker = Mosquitto(workdir).start()
    try:
        return bare_round_trip(broker, rounds)
    finally:
        broker.stop()


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-channel-") as tmp:
        workdir = Path(tmp)
        broker = nodelay(Mosquitto(workdir)).start()
        db_url = f"sqlite:///{workdir / 'central.db'}"
        central = Central(db_url)
        config = provision_store(workdir / "S001", "S001", broker.url, db_url)
        seed(central, workdir)
        aggregator = aggregator_process(db_url, broker.url, workdir / "agg.log").start()
        agent = store_process(config).start()
        try:
            store = edge_db.connect(str(workdir / "S001" / "S001.db"))
            wait_until(lambda: store.conn.execute("SELECT count(*) FROM products").fetchone()[0] == SKUS, 120,
                       what="the product list at S001")  # fmt: skip
            replica.adjust_stock(store, "SKU00001", RESERVATIONS + 5, "received")
            level = "SELECT on_hand FROM stock_levels WHERE store_id = 'S001' AND sku = 'SKU00001'"
            wait_until(lambda: central.scalar(level, (), 0) == RESERVATIONS + 5, 60, what="S001 stock")
            bare = bare_round_trip(broker, ROUNDS)
            nagle = nagle_floor(workdir, max(20, ROUNDS // 10))
            rng = random.Random(7)
            with Client(broker.url, "web", timeout=30) as web:
                web.stock("SKU00000")  # first connection and caches
                stock = []
                for _ in range(ROUNDS):
                    started = time.perf_counter()
                    answer = web.stock(f"SKU{rng.randrange(SKUS):05d}")
                    stock.append((time.perf_counter() - started) * 1000)
                    assert len(answer.stores) >= STORES - 1, len(answer.stores)
                reserve = []
                for n in range(RESERVATIONS):
                    started = time.perf_counter()
                    held = web.reserve("SKU00001", "S001", 1, key=f"bench-{n}", wait_s=10)
                    reserve.append((time.perf_counter() - started) * 1000)
                    assert held.state == "confirmed", held
        finally:
            agent.terminate()
            aggregator.terminate()
            central.close()
            broker.stop()
    figures = {
        "stock_p50_ms": pct(stock, 0.5), "stock_p99_ms": pct(stock, 0.99),
        "reserve_p50_ms": pct(reserve, 0.5), "reserve_p99_ms": pct(reserve, 0.99),
        "bare_p50_ms": pct(bare, 0.5), "bare_p99_ms": pct(bare, 0.99), "nagle_p50_ms": pct(nagle, 0.5),
    }  # fmt: skip
    print(f"channel stock query, 1 SKU x {STORES} stores ({SKUS:,} SKUs, {SKUS * STORES:,} levels), {ROUNDS} queries:"
          f" p50 {figures['stock_p50_ms']:.1f} ms, p99 {figures['stock_p99_ms']:.1f} ms"
          f"   (limit p99 < {STOCK_LIMIT_MS:.0f} ms)")  # fmt: skip
    print(f"reservation round trip channel -> HQ -> store -> channel, {RESERVATIONS} reservations:"
          f" p50 {figures['reserve_p50_ms']:.0f} ms, p99 {figures['reserve_p99_ms']:.0f} ms"
          f"   (limit p99 < {RESERVE_LIMIT_MS:.0f} ms)")  # fmt: skip
    print(f"bare MQTT 5 request/response on the same broker, {ROUNDS} round trips:"
          f" p50 {figures['bare_p50_ms']:.2f} ms, p99 {figures['bare_p99_ms']:.2f} ms   (reference: the floor)")
    print(f"  the same on a broker without set_tcp_nodelay: p50 {figures['nagle_p50_ms']:.1f} ms (Nagle + delayed ACK)")
    verdict = figures["stock_p99_ms"] < STOCK_LIMIT_MS and figures["reserve_p99_ms"] < RESERVE_LIMIT_MS
    print("within limits" if verdict else "OVER A LIMIT")
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))
    return figures


if __name__ == "__main__":
    run()
