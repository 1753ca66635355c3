"""A small certificate authority for a chain's broker: CA, broker server certificate, client certificates.

The client certificate's common name is the MQTT username (Mosquitto's ``use_identity_as_username``),
so the broker ACL's ``%u`` is the store id and a store can only touch its own topics.
"""

from __future__ import annotations

import datetime as dt
import grp
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tenpo.shared.errors import UserError


@dataclass(frozen=True, slots=True)
class Issued:
    cert: Path
    key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, group: str | None = None) -> None:
    """The key 0600, or 0640 owned by ``group`` (the broker key: Mosquitto 2 reads it as ``mosquitto``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    gid = None
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise UserError(f"no group {group!r} on this machine (install mosquitto first, or leave --key-group out)") from None
    path.unlink(missing_ok=True)  # a new file, so the mode below is the mode it has
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        if gid is not None:
            os.fchown(handle.fileno(), -1, gid)
            os.fchmod(handle.fileno(), 0o640)
        handle.write(data)


def _write_public(path: Path, data: bytes) -> None:
    """A certificate is public: 0644 whatever the umask, so the broker's own user can read it."""
    path.write_bytes(data)
    path.chmod(0o644)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenpo"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def create_ca(directory: Path, name: str = "Tenpo chain CA", days: int = 3650) -> Issued:
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    if cert_path.exists():
        raise UserError(f"{cert_path} exists: a chain has one CA; remove it first to start over")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return Issued(cert_path, key_path)


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    except FileNotFoundError:
        raise UserError(f"no CA in {directory}: run `tenpo provision ca --dir {directory}` first") from None
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def issue(
    directory: Path, common_name: str, *, server_hosts: tuple[str, ...] = (), days: int = 825, key_group: str | None = None
) -> Issued:
    """A certificate signed by the chain CA: a server one when ``server_hosts`` is given, else a client one."""
    ca_cert, ca_key = load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if server_hosts:
        names: list[x509.GeneralName] = []
        for host in server_hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = directory / f"{common_name}.crt", directory / f"{common_name}.client.key"
    if server_hosts:
        key_path = directory / f"{common_name}.key"
    _write_key(key_path, key, key_group)
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    # Every certificate the CA signed, so `tenpo provision revoke` can revoke all of an identity's.
    with (directory / "issued.tsv").open("a") as index:
        index.write(f"{cert.serial_number:x}\t{common_name}\t{cert.not_valid_after_utc.isoformat()}\n")
    return Issued(cert_path, key_path)
