"""A TLS broker with a client certificate per store: the chain syncs over mqtts://, a store cannot
speak for another store, and a client without a certificate from the chain's CA is refused."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tenpo.cli import main
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.config import load_config
from tenpo.sandbox import Mosquitto, aggregator_process, provision_store, store_process, wait_until

ACL = Path(__file__).resolve().parent.parent / "firmware-config" / "broker" / "acl"


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    assert main(["provision", "ca", "--dir", str(directory)]) == 0
    assert main(["provision", "broker", "--dir", str(directory), "--host", "127.0.0.1", "--host", "localhost"]) == 0
    for store_id in ("S001", "S002"):
        assert main(["provision", "store", store_id, "--dir", str(directory)]) == 0
    assert main(["provision", "hq", "hq-aggregator-1", "--dir", str(directory)]) == 0
    (directory / "acl").write_text(ACL.read_text())
    return directory


def tls_client(pki_dir: Path, name: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    context.load_cert_chain(str(pki_dir / f"{name}.crt"), str(pki_dir / f"{name}.client.key"))
    client.tls_set_context(context)
    return client


# MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s, client id "S001") and the CONNACK accepting it.
MQTT_CONNECT = bytes([0x10, 16, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 4]) + b"S001"
CONNACK_ACCEPTED = bytes([0x20, 2, 0, 0])


class HandshakeRefused(Exception):
    """The TCP connection was made and the broker ended the TLS handshake with an alert."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def mqtt_hello(port: int, pki_dir: Path, cert_dir: Path | None) -> bytes:
    """Open TCP, do the TLS handshake with the store certificate of ``cert_dir`` (none if None), send
    CONNECT and return the broker's first four bytes. A broker that cannot be reached at all raises
    ``OSError`` here, never ``HandshakeRefused``, so a dead broker cannot pass for a refusing one."""
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    # TLS 1.2: the broker's verdict on the client certificate comes inside the handshake as an alert
    # (under TLS 1.3 the client has already finished its side when the verdict arrives).
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert_dir is not None:
        context.load_cert_chain(str(cert_dir / "S001.crt"), str(cert_dir / "S001.client.key"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
        except ssl.SSLError as refused:
            raise HandshakeRefused(refused.reason or str(refused)) from refused
        with tls:
            tls.sendall(MQTT_CONNECT)
            return tls.recv(4)


def test_the_broker_refuses_clients_without_a_certificate_of_the_chain_at_the_handshake(
    tmp_path: Path, pki_dir: Path
) -> None:
    foreign = tmp_path / "foreign-pki"  # another CA: same names, different keys
    assert main(["provision", "ca", "--dir", str(foreign)]) == 0
    assert main(["provision", "store", "S001", "--dir", str(foreign)]) == 0
    broker = Mosquitto(tmp_path, tls_dir=pki_dir).start()
    try:
        assert mqtt_hello(broker.port, pki_dir, pki_dir) == CONNACK_ACCEPTED, "the chain's own store connects"
        for cert_dir in (None, foreign):
            with pytest.raises(HandshakeRefused) as refused:
                mqtt_hello(broker.port, pki_dir, cert_dir)
            assert "ALERT" in refused.value.reason, refused.value.reason
        assert mqtt_hello(broker.port, pki_dir, pki_dir) == CONNACK_ACCEPTED, "refusals left the broker serving"
    finally:
        broker.stop()


def test_chain_syncs_over_tls_and_the_acl_confines_each_store(tmp_path: Path, pki_dir: Path, sqlite_url: str) -> None:
    broker = Mosquitto(tmp_path, tls_dir=pki_dir).start()
    try:
        extra = {"ca": str(pki_dir / "ca.pem"), "cert": str(pki_dir / "S001.crt"), "key": str(pki_dir / "S001.client.key")}
        config_path = provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url, broker_extra=extra)
        aggregator = aggregator_process(
            sqlite_url, broker.url, tmp_path / "agg.log", client_id="hq-aggregator-1",
            tls=(pki_dir / "ca.pem", pki_dir / "hq-aggregator-1.crt", pki_dir / "hq-aggregator-1.client.key"),
        )  # fmt: skip
        aggregator.start()
        agent = store_process(config_path).start()
        db = edge_db.connect(load_config(str(config_path)).database)
        central = Central(sqlite_url)
        replica.register_member(db, "S001", name="高橋 健", phone="080-1111-2222")
        wait_until(lambda: central.scalar("SELECT count(*) FROM members") == 1, 30, what="member over TLS")
        wait_until(lambda: replica.sync_status(db)["outbox_pending"] == 0, 30, what="ack over TLS")

        # S002's certificate cannot publish under S001's topics: the broker drops it, HQ never sees it.
        intruder = tls_client(pki_dir, "S002")
        connected = threading.Event()
        intruder.on_connect = lambda *a: connected.set()
        intruder.connect("127.0.0.1", broker.port)
        intruder.loop_start()
        assert connected.wait(10)
        intruder.publish("tenpo/v1/stores/S001/up/events", b'{"v":1}', qos=1).wait_for_publish(5)
        intruder.loop_stop()
        intruder.disconnect()

        replica.register_member(db, "S001", name="伊藤 美咲", phone="080-3333-4444")
        wait_until(lambda: central.scalar("SELECT count(*) FROM members") == 2, 30, what="second member")
        assert central.scalar("SELECT count(*) FROM dead_letters") == 0, "the intruder's message never reached HQ"
        agent.terminate()
        aggregator.terminate()
        central.close()
    finally:
        broker.stop()
