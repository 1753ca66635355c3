"""Hostile or broken downstream messages never stop a store: they are dead-lettered, the rest applies."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.config import load_config
from tenpo.edge.outbox import get_meta
from tenpo.sandbox import aggregator_process, provision_store, store_process, wait_until
from tenpo.shared.protocol import Change, ChangePage, down_topic, encode


def test_bad_downstream_messages_are_dead_lettered_and_the_agent_keeps_going(tmp_path: Path, broker, sqlite_url) -> None:
    Central(sqlite_url).close()
    config_path = provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url)
    aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    db = edge_db.connect(load_config(str(config_path)).database)
    wait_until(lambda: get_meta(db.conn, "bootstrapped") == "1", 30, what="bootstrap")

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert connected.wait(10)
    cursor = int(db.conn.execute("SELECT value FROM counters WHERE name = 'cursor'").fetchone()[0])
    hostile = [
        (down_topic("S001", "changes"), b"\xff\xfe not json"),
        (down_topic("S001", "snapshot"), b'{"snapshot_id": 5}'),
        (down_topic("S001", "ack"), json.dumps({"stream": "someone-else", "hwm": 10**9}).encode()),
        (down_topic("S001", "changes"), encode(ChangePage(cursor, cursor + 4, cursor + 4, [
            Change(cursor + 1, "product.upsert", "X1", {"sku": "X1", "name": "壊れた", "price": "abc", "tax_class": "standard"}),
            Change(cursor + 2, "teleport.item", "Z", {}),
            Change(cursor + 3, "member.erase", "M", {"no_member_id": True}),
            Change(cursor + 4, "product.upsert", "OK1", {"sku": "OK1", "jan": None, "name": "おにぎり", "price": 130,
                                                         "tax_class": "reduced"}),
        ]))),
    ]  # fmt: skip
    for topic, payload in hostile:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    wait_until(lambda: db.conn.execute("SELECT 1 FROM products WHERE sku = 'OK1'").fetchone(), 20,
               what="the good change after the bad ones")  # fmt: skip
    reasons = [row[0] for row in db.conn.execute("SELECT reason FROM dead_letters ORDER BY id")]
    assert len(reasons) == 5, reasons
    assert any("invalid JSON" in r for r in reasons) and any("unknown change kind 'teleport.item'" in r for r in reasons)
    assert agent.alive(), "the agent survived every one of them"
    assert db.conn.execute("SELECT count(*) FROM products WHERE sku = 'X1'").fetchone()[0] == 0
    # and it still syncs: a member registered now reaches HQ
    replica.register_member(db, "S001", name="中村 さくら", phone="070-1234-5678")
    wait_until(lambda: replica.sync_status(db)["outbox_pending"] == 0, 20, what="the next event acknowledged")
    assert db.conn.execute("SELECT value FROM counters WHERE name = 'acked'").fetchone()[0] == 1, "a foreign ack was ignored"
    client.loop_stop()
