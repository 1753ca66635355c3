"""Sync throughput over TLS next to plain MQTT, on the same broker in the same run (issue 14).

One Mosquitto with two listeners: plain (anonymous) and TLS with a client certificate per store, the
shipped ACL and certificates made by `tenpo provision`. For each listener a fresh store replays a
backlog of ``TENPO_BENCH_TLS_EVENTS`` events (default 20,000) to a fresh aggregator until every one
is acknowledged (store → broker → aggregator → ack), as bench_sync measures the plain link; and raw
paho QoS 1 publishes of the same payloads give each listener's ceiling.
"""

from __future__ import annotations

import contextlib
import io
import os
import pwd
import random
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.bench_sync import _payload, _products, publish_rate
from tenpo.cli import main as tenpo
from tenpo.cloud.admin import import_products
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge.config import load_config
from tenpo.edge.outbox import append_event, read_counter
from tenpo.sandbox import aggregator_process, free_port, provision_store, store_process, wait_for_port, wait_until

EVENTS = int(os.environ.get("TENPO_BENCH_TLS_EVENTS", "20000"))
ACL = Path(__file__).resolve().parents[1] / "firmware-config" / "broker" / "acl"
TARGET_RATIO = 0.5  # TLS keeps at least half the plain rate (AES-GCM on both ends is cheap next to SQLite)


def start_broker(workdir: Path, pki: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    plain, tls = free_port(), free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(
        "per_listener_settings true\n"
        f"listener {plain} 127.0.0.1\nallow_anonymous true\n"
        f"listener {tls} 127.0.0.1\nallow_anonymous false\n"
        f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'broker.crt'}\nkeyfile {pki / 'broker.key'}\n"
        f"crlfile {pki / 'crl.pem'}\nrequire_certificate true\nuse_identity_as_username true\n"
        f"tls_version tlsv1.2\nacl_file {pki / 'acl'}\n"
        "persistence false\nmax_queued_messages 100000\nmax_inflight_messages 100\n"
        f"log_type error\nlog_dest file {workdir / 'mosquitto.log'}\n"
        f"user {pwd.getpwuid(os.getuid()).pw_name}\n"  # as root it would drop to mosquitto: keep our private files readable
    )
    process = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for_port(plain)
    wait_for_port(tls)
    return process, plain, tls


def raw_qos1_rate(port: int, payloads: list[bytes], context: ssl.SSLContext | None, client_id: str) -> float:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(32)
    if context is not None:
        client.tls_set_context(context)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(10), "the bench client could not connect"
    topic = f"tenpo/v1/stores/{client_id}/up/bench"  # allowed by the ACL for the certificate's CN
    return publish_rate(client, topic, payloads)


def replay(workdir: Path, name: str, url: str, pki: Path | None) -> tuple[float, list[bytes]]:
    db_url = f"sqlite:///{workdir / f'{name}-central.db'}"
    central = Central(db_url)
    import_products(central, _products(workdir))
    extra = None if pki is None else {"ca": str(pki / "ca.pem"), "cert": str(pki / f"{name}.crt"),
                                       "key": str(pki / f"{name}.client.key")}  # fmt: skip
    config_path = provision_store(workdir / name, name, url, db_url, broker_extra=extra)
    store = edge_db.connect(load_config(str(config_path)).database)
    rng = random.Random(1)
    with edge_db.transaction(store) as conn:
        for _ in range(EVENTS):
            append_event(conn, "stock.adjusted", _payload(rng))
    payloads = [row[0].encode() for row in store.conn.execute("SELECT payload FROM outbox LIMIT 5000")]
    tls = None if pki is None else (pki / "ca.pem", pki / "hq-aggregator-1.crt", pki / "hq-aggregator-1.client.key")
    aggregator = aggregator_process(db_url, url, workdir / f"{name}-agg.log", client_id="hq-aggregator-1", tls=tls)
    aggregator.start()
    agent = store_process(config_path)
    started = time.perf_counter()
    agent.start()
    wait_until(lambda: read_counter(store.conn, "acked") == EVENTS, 600, interval=0.02, what=f"{name} backlog acked")
    rate = EVENTS / (time.perf_counter() - started)
    agent.terminate()
    aggregator.terminate()
    central.close()
    return rate, payloads


def run() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="tenpo-bench-tls-"))
    pki = workdir / "pki"
    with contextlib.redirect_stdout(io.StringIO()):  # provision prints the files it wrote
        for args in (["ca"], ["broker", "--host", "127.0.0.1"], ["store", "T001"], ["store", "P001"],
                     ["hq", "hq-aggregator-1"]):  # fmt: skip
            assert tenpo(["provision", *args, "--dir", str(pki)]) == 0
    (pki / "acl").write_text(ACL.read_text())
    broker, plain_port, tls_port = start_broker(workdir, pki)
    try:
        plain_rate, payloads = replay(workdir, "P001", f"mqtt://127.0.0.1:{plain_port}", None)
        tls_rate, _ = replay(workdir, "T001", f"mqtts://127.0.0.1:{tls_port}", pki)
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        context.load_cert_chain(str(pki / "T001.crt"), str(pki / "T001.client.key"))
        sample = payloads * max(1, EVENTS // max(1, len(payloads)))
        raw_plain = raw_qos1_rate(plain_port, sample, None, "P001")
        raw_tls = raw_qos1_rate(tls_port, sample, context, "T001")
        ratio = tls_rate / plain_rate
        print(f"sync replay of {EVENTS:,} events over TLS (client certificate, ACL): {tls_rate:,.0f} events/s"
              f"  vs plain on the same broker: {plain_rate:,.0f} events/s  (ratio {ratio:.2f}, target >= {TARGET_RATIO})")
        print(f"raw paho QoS 1 publishes over TLS: {raw_tls:,.0f} msg/s  vs plain: {raw_plain:,.0f} msg/s"
              f"  (ratio {raw_tls / raw_plain:.2f}; the ceiling each sync figure is measured under)")  # fmt: skip
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    run()
