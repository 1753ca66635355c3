"""Revocation and renewal for the chain CA of ``tenpo.shared.pki``.

The CA directory keeps ``issued.tsv`` (serial, common name, expiry of every certificate it signed)
and ``crl.pem``, the certificate revocation list the broker reads (Mosquitto's ``crlfile``). The CRL
is signed by the CA and valid until the CA itself expires: Mosquitto (OpenSSL) refuses every client
once a CRL's nextUpdate has passed, and a broker that only rereads the file on SIGHUP must not lock
the chain out because nobody revoked anything for a year.

Mosquitto reads the CRL when it starts and again on SIGHUP (``systemctl reload mosquitto``), so a
revocation takes effect at the operator's reload, for new connections; docs/security.md says so.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tenpo.shared.errors import UserError
from tenpo.shared.pki import Issued, issue, load_ca

CRL_NAME = "crl.pem"
INDEX_NAME = "issued.tsv"


@dataclass(frozen=True, slots=True)
class IssuedRecord:
    serial: int
    common_name: str
    not_after: str


def issued_records(directory: Path) -> list[IssuedRecord]:
    """The CA's index; lines that do not parse are skipped (the file is the CA's own, 0644 at most)."""
    try:
        lines = (directory / INDEX_NAME).read_text().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) == 3:
            try:
                records.append(IssuedRecord(int(parts[0], 16), parts[1], parts[2]))
            except ValueError:
                continue
    return records


def revoked_serials(directory: Path) -> dict[int, dt.datetime]:
    """Serial -> revocation time, from ``crl.pem`` (empty when there is none yet)."""
    try:
        crl = x509.load_pem_x509_crl((directory / CRL_NAME).read_bytes())
    except FileNotFoundError:
        return {}
    return {entry.serial_number: entry.revocation_date_utc for entry in crl}


def write_crl(directory: Path, revoked: dict[int, dt.datetime] | None = None) -> Path:
    """(Re)write ``crl.pem`` with ``revoked`` (default: what it lists now), signed by the CA, 0644."""
    ca_cert, ca_key = load_ca(directory)
    entries = revoked_serials(directory) if revoked is None else revoked
    now = dt.datetime.now(dt.UTC)
    number = 1
    try:
        old = x509.load_pem_x509_crl((directory / CRL_NAME).read_bytes())
        number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    except (FileNotFoundError, x509.ExtensionNotFound):
        pass
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(max(ca_cert.not_valid_after_utc, now + dt.timedelta(days=1)))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for serial, when in sorted(entries.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    path = directory / CRL_NAME
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    temporary.chmod(0o644)  # public, and read by the broker's own user
    temporary.replace(path)
    return path


def _current_serial(directory: Path, common_name: str) -> int | None:
    try:
        return x509.load_pem_x509_certificate((directory / f"{common_name}.crt").read_bytes()).serial_number
    except FileNotFoundError:
        return None


def revoke(directory: Path, common_name: str, serial: int | None = None) -> list[int]:
    """Revoke one certificate (``serial``) or every certificate ever issued to ``common_name``.
    Returns the serials newly revoked; raises UserError when there is nothing of that name."""
    known = {r.serial for r in issued_records(directory) if r.common_name == common_name}
    current = _current_serial(directory, common_name)
    if current is not None:
        known.add(current)
    if not known:
        raise UserError(f"no certificate was issued to {common_name!r} by the CA in {directory}")
    if serial is not None:
        if serial not in known:
            raise UserError(f"serial {serial:x} was not issued to {common_name!r}")
        known = {serial}
    revoked = revoked_serials(directory)
    now = dt.datetime.now(dt.UTC)
    fresh = sorted(s for s in known if s not in revoked)
    for number in fresh:
        revoked[number] = now
    write_crl(directory, revoked)
    return fresh


def renew(directory: Path, common_name: str, days: int = 825) -> tuple[Issued, int | None]:
    """A new key and certificate for an identity that has one (same CN, so the same ACL and store).
    The previous certificate stays valid until it expires (the store switches when its files are
    replaced); its serial is returned so the operator may revoke it at once."""
    previous = _current_serial(directory, common_name)
    if previous is None:
        raise UserError(f"no {common_name}.crt in {directory}: issue one first (tenpo provision store {common_name})")
    return issue(directory, common_name, days=days), previous


def not_after(cert_pem: bytes) -> dt.datetime:
    """A PEM certificate's expiry (UTC); ValueError when the bytes are not one."""
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def certificate_expiry(path: Path | None) -> float | None:
    """Unix seconds when the certificate at ``path`` expires; None when there is none or it is unreadable."""
    if path is None:
        return None
    try:
        return not_after(path.read_bytes()).timestamp()
    except (OSError, ValueError):
        return None


def certificate_status(path: Path | None, now: float, warn_days: int) -> tuple[dict[str, object] | None, str | None]:
    """For `edge status`: the store certificate's expiry and days left, and an alert when it expires
    within ``warn_days`` (or has expired, or cannot be read)."""
    if path is None:
        return None, None
    expires = certificate_expiry(path)
    if expires is None:
        return {"path": str(path), "not_after": None, "days_left": None}, f"store certificate {path} cannot be read"
    days_left = (expires - now) / 86400.0
    info: dict[str, object] = {"path": str(path), "not_after": expires, "days_left": round(days_left, 1)}
    if days_left < 0:
        return info, f"store certificate expired {-days_left:.0f} days ago: the broker refuses it (tenpo provision renew)"
    if days_left <= warn_days:
        return info, f"store certificate expires in {days_left:.0f} days: renew it (tenpo provision renew)"
    return info, None


DEFAULT_WARN_DAYS = 30


def cert_warn_days() -> int:
    """Days before expiry a certificate is warned about: TENPO_CERT_WARN_DAYS, default 30."""
    try:
        return max(0, int(os.environ.get("TENPO_CERT_WARN_DAYS", DEFAULT_WARN_DAYS)))
    except ValueError:
        return DEFAULT_WARN_DAYS
