"""`tenpo provision revoke ID` writes a CRL signed by the chain CA at the path the shipped broker
config names (crlfile); after the operator's reload (SIGHUP) a real Mosquitto refuses the revoked
store and still accepts the others."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509

from tenpo.cli import main
from tests.test_broker_config import CONNACK_ACCEPTED, ShippedBroker, hello, pki_dir, provision_chain

__all__ = ["pki_dir"]  # the fixture, imported for pytest


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_a_revoked_store_is_refused_after_the_reload_and_the_others_still_connect(pki_dir: Path) -> None:
    provision_chain(pki_dir, "S001", "S002")
    broker = ShippedBroker(pki_dir).start()
    try:
        assert hello(broker.port, pki_dir, "S001") == CONNACK_ACCEPTED
        assert hello(broker.port, pki_dir, "S002") == CONNACK_ACCEPTED

        assert main(["provision", "revoke", "S001", "--dir", str(pki_dir)]) == 0
        crl = x509.load_pem_x509_crl((pki_dir / "crl.pem").read_bytes())
        ca = x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes())
        assert crl.is_signature_valid(ca.public_key())
        assert crl.get_revoked_certificate_by_serial_number(serial_of(pki_dir / "S001.crt")) is not None
        assert crl.get_revoked_certificate_by_serial_number(serial_of(pki_dir / "S002.crt")) is None

        broker.reload()  # the operator's `systemctl reload mosquitto`
        with pytest.raises(ssl.SSLError) as refused:
            hello(broker.port, pki_dir, "S001")
        assert "REVOKED" in str(refused.value).upper(), refused.value
        assert hello(broker.port, pki_dir, "S002") == CONNACK_ACCEPTED, "the other stores are untouched"
    finally:
        broker.stop()

    # A restart reads the same CRL: the revocation holds.
    broker = ShippedBroker(pki_dir).start()
    try:
        with pytest.raises(ssl.SSLError):
            hello(broker.port, pki_dir, "S001")
        assert hello(broker.port, pki_dir, "S002") == CONNACK_ACCEPTED
    finally:
        broker.stop()


def test_revoking_covers_every_certificate_of_the_store_and_refuses_unknown_names(
    pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    provision_chain(pki_dir, "S001")
    first = serial_of(pki_dir / "S001.crt")
    assert main(["provision", "renew", "S001", "--dir", str(pki_dir)]) == 0
    second = serial_of(pki_dir / "S001.crt")
    assert first != second
    assert main(["provision", "revoke", "S001", "--dir", str(pki_dir)]) == 0
    crl = x509.load_pem_x509_crl((pki_dir / "crl.pem").read_bytes())
    assert {entry.serial_number for entry in crl} == {first, second}, "a stolen old key is revoked too"
    capsys.readouterr()
    assert main(["provision", "revoke", "S001", "--dir", str(pki_dir)]) == 0  # again: nothing new, same CRL
    assert "none new" in capsys.readouterr().out
    assert len(list(x509.load_pem_x509_crl((pki_dir / "crl.pem").read_bytes()))) == 2
    for name in ("S999", "../ca"):
        assert main(["provision", "revoke", name, "--dir", str(pki_dir)]) != 0
    err = capsys.readouterr().err
    assert "no certificate was issued to 'S999'" in err and "only letters, digits" in err


def test_a_compromised_channel_client_is_revoked_like_a_store(pki_dir: Path) -> None:
    provision_chain(pki_dir, "S001")
    assert main(["provision", "channel", "web", "--dir", str(pki_dir)]) == 0  # CN channel-web, ACL lines added
    broker = ShippedBroker(pki_dir).start()
    try:
        assert hello(broker.port, pki_dir, "channel-web") == CONNACK_ACCEPTED
        assert main(["provision", "revoke", "channel-web", "--dir", str(pki_dir)]) == 0
        broker.reload()
        with pytest.raises(ssl.SSLError):
            hello(broker.port, pki_dir, "channel-web")
        assert hello(broker.port, pki_dir, "S001") == CONNACK_ACCEPTED
    finally:
        broker.stop()
