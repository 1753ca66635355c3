"""The channel API on a TLS broker with a client certificate per channel (`tenpo provision channel NAME`): the
web shop's certificate works for its own requests, and the broker's ACL refuses it another channel's topics,
a store's topics and the stores' change feed; HQ never answers outside the asking channel's subtree."""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tenpo.channel import Client
from tenpo.cli import main
from tenpo.cloud.admin import import_products
from tenpo.cloud.db import Central
from tenpo.sandbox import Mosquitto, aggregator_process, wait_until
from tenpo.shared.mqtt import TlsFiles
from tests.test_channel_support import PRODUCTS

ACL = Path(__file__).resolve().parent.parent / "firmware-config" / "broker" / "acl"


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    assert main(["provision", "ca", "--dir", str(directory)]) == 0
    assert main(["provision", "broker", "--dir", str(directory), "--host", "127.0.0.1"]) == 0
    assert main(["provision", "hq", "hq-aggregator-1", "--dir", str(directory)]) == 0
    (directory / "acl").write_text(ACL.read_text())
    for channel in ("web", "app"):
        assert main(["provision", "channel", channel, "--dir", str(directory)]) == 0
    assert main(["provision", "channel", "web", "--dir", str(directory)]) == 0  # twice: one ACL block
    return directory


def tls(pki_dir: Path, name: str) -> TlsFiles:
    return TlsFiles(pki_dir / "ca.pem", pki_dir / f"{name}.crt", pki_dir / f"{name}.client.key")


def raw_client(pki_dir: Path, name: str, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    context.load_cert_chain(str(pki_dir / f"{name}.crt"), str(pki_dir / f"{name}.client.key"))
    client.tls_set_context(context)
    return client


def connected(client: mqtt.Client, port: int) -> mqtt.Client:
    ready = threading.Event()
    client.on_connect = lambda *args: ready.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert ready.wait(10)
    return client


def subscribe(client: mqtt.Client, topics: list[tuple[str, int]]) -> None:
    acked = threading.Event()
    client.on_subscribe = lambda *args: acked.set()
    client.subscribe(topics)
    assert acked.wait(10)


def test_provision_channel_writes_one_acl_block_confining_the_channel(pki_dir: Path) -> None:
    lines = (pki_dir / "acl").read_text().splitlines()
    assert lines.count("user channel-web") == 1 and lines.count("user channel-app") == 1
    assert (pki_dir / "channel-web.crt").exists()
    assert main(["provision", "channel", "Web/../x", "--dir", str(pki_dir)]) == 1


def test_a_channel_certificate_reaches_only_its_own_topics(tmp_path: Path, pki_dir: Path, sqlite_url: str) -> None:
    central = Central(sqlite_url)
    products = tmp_path / "products.csv"
    products.write_text(PRODUCTS)
    import_products(central, products)
    broker = Mosquitto(tmp_path, tls_dir=pki_dir).start()
    try:
        aggregator = aggregator_process(
            sqlite_url, broker.url, tmp_path / "agg.log", client_id="hq-aggregator-1",
            tls=(pki_dir / "ca.pem", pki_dir / "hq-aggregator-1.crt", pki_dir / "hq-aggregator-1.client.key"),
        ).start()  # fmt: skip
        # A spy with HQ's rights sees every request and every store upstream message that gets through.
        seen: list[str] = []
        spy = raw_client(pki_dir, "hq-aggregator-1", "spy")
        spy.on_message = lambda c, u, m: seen.append(m.topic)
        subscribe(connected(spy, broker.port), [("tenpo/v1/channel/+/req/#", 1), ("tenpo/v1/stores/+/up/#", 1),
                                                ("tenpo/v1/hq/state", 1)])  # fmt: skip
        wait_until(lambda: "tenpo/v1/hq/state" in seen, 30, what="the aggregator online (its retained state)")
        seen.clear()

        with Client(broker.url, "web", tls=tls(pki_dir, "channel-web")) as web:
            assert web.stock("UMBRELLA").sku == "UMBRELLA"  # its own request topic works over TLS

        # The web shop's certificate tries the app's request topic, a store's upstream, and listens to the
        # app's answers, the stores' change feed and a store's downstream.
        received: list[str] = []
        intruder = raw_client(pki_dir, "channel-web", "web-intruder")
        intruder.on_message = lambda c, u, m: received.append(m.topic)
        connected(intruder, broker.port)
        # Mosquitto grants these subscriptions and filters at delivery by the ACL: what arrives is what counts.
        subscribe(intruder, [("tenpo/v1/channel/app/res/#", 1), ("tenpo/v1/broadcast/#", 1),
                             ("tenpo/v1/stores/S001/down/#", 1), ("tenpo/v1/channel/web/res/intruder", 1)])  # fmt: skip
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "tenpo/v1/channel/web/res/intruder"
        for topic in ("tenpo/v1/channel/app/req/stock", "tenpo/v1/stores/S001/up/events",
                      "tenpo/v1/stores/channel-web/up/events"):  # fmt: skip
            intruder.publish(topic, b'{"sku":"UMBRELLA"}', qos=1, properties=props).wait_for_publish(5)
        # HQ's own publications the intruder must not receive:
        hq = connected(raw_client(pki_dir, "hq-aggregator-1", "hq-writer"), broker.port)
        for topic in ("tenpo/v1/channel/app/res/x", "tenpo/v1/broadcast/changes", "tenpo/v1/stores/S001/down/ack"):
            hq.publish(topic, b"{}", qos=1).wait_for_publish(5)
        # ... and a legitimate request last: once it is through, everything before it has been decided.
        intruder.publish("tenpo/v1/channel/web/req/stock", b'{"sku":"UMBRELLA"}', qos=1, properties=props)
        wait_until(lambda: seen.count("tenpo/v1/channel/web/req/stock") == 2, 10, what="the legitimate request")
        wait_until(lambda: "tenpo/v1/channel/web/res/intruder" in received, 10, what="the answer to it")
        assert [t for t in seen if "/app/" in t or "/stores/" in t] == [], "the broker refused the other topics"
        assert received == ["tenpo/v1/channel/web/res/intruder"], "nothing of the app's, the stores' or the feed"

        # A request naming another channel's answer topic is never answered there (nor anywhere).
        stolen = Properties(PacketTypes.PUBLISH)
        stolen.ResponseTopic = "tenpo/v1/channel/app/res/victim"
        listener = connected(raw_client(pki_dir, "channel-app", "app-victim"), broker.port)
        victim: list[str] = []
        listener.on_message = lambda c, u, m: victim.append(m.topic)
        subscribe(listener, [("tenpo/v1/channel/app/res/victim", 1)])
        intruder.publish("tenpo/v1/channel/web/req/stock", b'{"sku":"UMBRELLA"}', qos=1, properties=stolen)
        intruder.publish("tenpo/v1/channel/web/req/stock", b'{"sku":"UMBRELLA"}', qos=1, properties=props)
        wait_until(lambda: received.count("tenpo/v1/channel/web/res/intruder") == 2, 10, what="the next answer")
        assert victim == []
        for client in (spy, intruder, hq, listener):
            client.loop_stop()
            client.disconnect()
        aggregator.terminate()
        stats = dict(central.all("SELECT outcome, n FROM channel_stats WHERE channel = 'web'"))
        assert stats.get("forbidden") == 1 and stats.get("ok", 0) >= 3, stats
    finally:
        broker.stop()
        central.close()
