"""The shipped broker config (firmware-config/broker/mosquitto.conf) starts a real Mosquitto with the
files `tenpo provision` writes, under the names it writes them, and a store connects with its
client certificate.

The only changes made to the shipped file before running it: its absolute install folder
``/etc/mosquitto/tenpo/`` becomes a temporary folder (the test must not write to /etc), and
``listener 8883`` becomes a free port on 127.0.0.1 (8883 may be taken, and nothing should listen
beyond loopback in a test). No ``user`` line is added: run as root, Mosquitto drops to the
``mosquitto`` user before it loads the certificates, exactly as on an HQ server, which is what
makes the key's group and mode matter.
"""

from __future__ import annotations

import grp
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.sandbox import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "firmware-config" / "broker" / "mosquitto.conf"
INSTALL_DIR = "/etc/mosquitto/tenpo/"

# MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s, client id "probe") and the CONNACK accepting it.
MQTT_CONNECT = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 5]) + b"probe"
CONNACK_ACCEPTED = bytes([0x20, 2, 0, 0])


def drops_to_mosquitto() -> bool:
    """Run as root, Mosquitto switches to the mosquitto user (its default ``user``) before loading keys."""
    if os.getuid() != 0:
        return False
    try:
        grp.getgrnam("mosquitto")
    except KeyError:
        return False
    return True


@pytest.fixture
def pki_dir() -> Iterator[Path]:
    """A folder the broker's own user can reach (pytest's tmp_path is 0700 root when run as root)."""
    directory = Path(tempfile.mkdtemp(prefix="tenpo-broker-"))
    directory.chmod(0o755)  # only public files and a group-readable key go in here
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def provision_chain(directory: Path, *stores: str, key_group: bool = True) -> None:
    assert main(["provision", "ca", "--dir", str(directory)]) == 0
    broker = ["provision", "broker", "--dir", str(directory), "--host", "127.0.0.1", "--host", "localhost"]
    if key_group and drops_to_mosquitto():
        broker += ["--key-group", "mosquitto"]  # the documented install step (docs/operations.md)
    assert main(broker) == 0
    for store_id in stores:
        assert main(["provision", "store", store_id, "--dir", str(directory)]) == 0
    shutil.copy(REPO / "firmware-config" / "broker" / "acl", directory / "acl")
    (directory / "acl").chmod(0o644)


def shipped_config(directory: Path, port: int) -> Path:
    text = SHIPPED.read_text()
    assert text.count("listener 8883\n") == 1
    config = directory / "mosquitto.conf"
    config.write_text(text.replace(INSTALL_DIR, f"{directory}/").replace("listener 8883\n", f"listener {port} 127.0.0.1\n"))
    config.chmod(0o644)
    return config


class ShippedBroker:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.config = shipped_config(directory, self.port)
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ShippedBroker:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(self.config)],
                                            stdout=log, stderr=log)  # fmt: skip
        # Ready when it says "running" (after loading the certificates): the port opens before the key is read.
        deadline = time.monotonic() + 10
        while self.process.poll() is None and time.monotonic() < deadline:
            if b" running" in self.log.read_bytes():
                wait_for_port(self.port)
                return self
            time.sleep(0.02)
        self.stop()
        raise AssertionError(f"the shipped config did not start Mosquitto:\n{self.log.read_text()}")

    def reload(self) -> None:
        """What `systemctl reload mosquitto` does: SIGHUP, and Mosquitto rereads its config and files."""
        assert self.process is not None
        mark = self.log.stat().st_size
        self.process.send_signal(1)
        deadline = 100
        # Mosquitto logs "Reloading config." once it has handled the signal; wait for that line.
        for _ in range(deadline):
            if b"Reloading config" in self.log.read_bytes()[mark:]:
                return
            time.sleep(0.05)
        raise AssertionError("Mosquitto did not log a reload after SIGHUP")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


def hello(port: int, directory: Path, name: str | None) -> bytes:
    """TLS 1.2 handshake with ``name``'s client certificate (none if None), CONNECT, first 4 bytes back.
    A refusal in the handshake raises ssl.SSLError."""
    context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # the verdict on the client cert comes in the handshake
    if name is not None:
        context.load_cert_chain(str(directory / f"{name}.crt"), str(directory / f"{name}.client.key"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:  # fmt: skip
        tls.sendall(MQTT_CONNECT)
        return tls.recv(4)


def test_every_file_the_shipped_config_names_is_one_provision_writes(pki_dir: Path) -> None:
    provision_chain(pki_dir, "S001")
    named = [line.split()[1] for line in SHIPPED.read_text().splitlines()
             if line.split()[:1] in (["cafile"], ["certfile"], ["keyfile"], ["crlfile"], ["acl_file"])]  # fmt: skip
    assert {Path(p).name for p in named} == {"ca.pem", "broker.crt", "broker.key", "crl.pem", "acl"}
    for path in named:
        assert path.startswith(INSTALL_DIR) and (pki_dir / Path(path).name).is_file(), path
    assert "broker.pem" not in SHIPPED.read_text()


def test_the_shipped_config_starts_mosquitto_and_a_store_connects_with_its_certificate(pki_dir: Path) -> None:
    provision_chain(pki_dir, "S001")
    broker = ShippedBroker(pki_dir).start()
    try:
        assert hello(broker.port, pki_dir, "S001") == CONNACK_ACCEPTED
        with pytest.raises(ssl.SSLError):
            hello(broker.port, pki_dir, None)  # no client certificate: refused in the handshake
        assert hello(broker.port, pki_dir, "S001") == CONNACK_ACCEPTED
    finally:
        broker.stop()


@pytest.mark.skipif(not drops_to_mosquitto(), reason="needs root and a mosquitto user (Mosquitto only drops privileges as root)")
def test_a_root_only_broker_key_stops_mosquitto_and_the_group_readable_one_does_not(pki_dir: Path) -> None:
    provision_chain(pki_dir, "S001", key_group=False)  # `provision broker` without --key-group: root 0600
    key = pki_dir / "broker.key"
    assert (key.stat().st_mode & 0o777, key.stat().st_gid) == (0o600, 0)
    broker = ShippedBroker(pki_dir)
    with pytest.raises(AssertionError, match="server key"):
        broker.start()
    assert main(["provision", "broker", "--dir", str(pki_dir), "--host", "127.0.0.1", "--key-group", "mosquitto"]) == 0
    assert (key.stat().st_mode & 0o777, key.stat().st_gid) == (0o640, grp.getgrnam("mosquitto").gr_gid)
    broker = ShippedBroker(pki_dir).start()
    try:
        assert hello(broker.port, pki_dir, "S001") == CONNACK_ACCEPTED
    finally:
        broker.stop()


def test_key_group_that_does_not_exist_is_a_clear_refusal(pki_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["provision", "ca", "--dir", str(pki_dir)]) == 0
    code = main(["provision", "broker", "--dir", str(pki_dir), "--host", "127.0.0.1", "--key-group", "no-such-group-x"])
    assert code != 0 and "no group 'no-such-group-x'" in capsys.readouterr().err


def test_a_store_refuses_a_broker_whose_certificate_is_not_from_the_chain(pki_dir: Path, tmp_path: Path) -> None:
    """A sniffer who answers in the broker's place (DNS, ARP) has no certificate from the chain's CA."""
    provision_chain(pki_dir, "S001")
    ours = tmp_path / "ours"
    ours.mkdir()
    for name in ("ca.pem", "S001.crt", "S001.client.key"):
        shutil.copy(pki_dir / name, ours / name)
    for name in ("ca.pem", "ca.key", "broker.crt", "broker.key", "crl.pem", "issued.tsv", "S001.crt", "S001.client.key"):
        (pki_dir / name).unlink()
    provision_chain(pki_dir, "S001")  # an impostor's own CA, broker and even an "S001"
    broker = ShippedBroker(pki_dir).start()
    try:
        assert hello(broker.port, pki_dir, "S001") == CONNACK_ACCEPTED, "the impostor's broker is up"
        with pytest.raises(ssl.SSLCertVerificationError):
            hello(broker.port, ours, "S001")  # the real store, with the chain's CA, refuses it
    finally:
        broker.stop()
