"""Operator accounts at HQ: add, list, disable, TOTP enrolment, client certificates, and sign-in.

- Passwords: scrypt (hashlib) with a random salt; the cost parameters are stored with each hash, so
  they can be raised later without invalidating older passwords. At least 12 characters.
- TOTP (RFC 6238, cryptography's ``TOTP``: 6 digits, SHA-1, 30 s): mandatory for admins (an admin without
  an enrolled secret cannot sign in); a code is accepted for the step before, the current and the next,
  and only once: the newest step accepted is stored and any code of that step or an older one is refused.
- Lockout: ``MAX_FAILED`` wrong passwords or codes in a row lock the account for ``LOCK_S`` seconds.
- Every attempt is logged in ``operator_signins``; a good one also in the (hash-chained) audit log.
- The TOTP secret is stored in the central database (0600 for SQLite; on PostgreSQL protected by the
  database's roles and disk encryption, docs/operators.md). It is shown once, at enrolment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from tenpo.cloud.changes import audit
from tenpo.cloud.db import Central
from tenpo.cloud.operators.roles import ROLES, refusal
from tenpo.shared.errors import UserError
from tenpo.shared.ids import is_id

KDF = (2**17, 8, 1)  # scrypt n, r, p: OWASP's minimum for scrypt (128 MiB, about 0.3 s here)
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
MAX_FAILED = 5
LOCK_S = 15 * 60
TOTP_STEP = 30
TOTP_DIGITS = 6
ISSUER = "Tenpo HQ"
CLOCK: Callable[[], float] = time.time  # tests move time on by patching this, never by a flag


class SignInRefused(UserError):
    """A sign-in that did not succeed; the message says what the person may know (never whether a name exists)."""


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    role: str

    def refusal(self, action: str) -> str | None:
        return refusal(self.name, self.role, action)

    def require(self, action: str) -> None:
        why = self.refusal(action)
        if why is not None:
            raise UserError(f"refused: {why}")


# ---------------------------------------------------------------------------- pure parts


def hash_password(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + 2**20, dklen=32)


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"password: at most {MAX_PASSWORD} characters")


def _totp(secret_b32: str) -> TOTP:
    return TOTP(base64.b32decode(secret_b32), TOTP_DIGITS, hashes.SHA1(), TOTP_STEP)  # RFC 6238's default


def totp_code(secret_b32: str, at: float) -> str:
    """The code an authenticator app shows at ``at`` (tests, and the enrolment check)."""
    return _totp(secret_b32).generate(at).decode()


def totp_step_accepted(secret_b32: str, code: str, now: float, last_step: int) -> int | None:
    """The step ``code`` belongs to (now-1, now, now+1), if it is newer than ``last_step``; else None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == TOTP_DIGITS):
        return None
    totp, current = _totp(secret_b32), int(now // TOTP_STEP)
    for step in (current - 1, current, current + 1):
        try:
            totp.verify(code.encode(), step * TOTP_STEP)
        except InvalidToken:
            continue
        return step if step > last_step else None
    return None


def certificate_fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER, as hex: what is registered with the account."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise UserError("certificate: not a PEM X.509 certificate") from None
    return cert.fingerprint(hashes.SHA256()).hex()


def proves_key(cert_pem: bytes, key_pem: bytes) -> bool:
    """The private key belongs to the certificate: a fresh challenge signed by it verifies under the cert."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        key: Any = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise UserError("certificate key: not an unencrypted PEM private key") from None
    challenge, public = secrets.token_bytes(32), cert.public_key()
    try:
        if isinstance(key, ed25519.Ed25519PrivateKey) and isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(key.sign(challenge), challenge)
        elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(key.sign(challenge, ec.ECDSA(hashes.SHA256())), challenge, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey):
            public.verify(key.sign(challenge, padding.PKCS1v15(), hashes.SHA256()), challenge, padding.PKCS1v15(),
                          hashes.SHA256())  # fmt: skip
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _check_name(name: str) -> str:
    if not is_id(name) or len(name) > 64:
        raise UserError(f"operator name {name[:64]!r}: letters, digits and '._:-', at most 64")
    return name


# ---------------------------------------------------------------------------- accounts


def add_operator(db: Central, name: str, role: str, password: str, by: str = "operator",
                 kdf: tuple[int, int, int] = KDF) -> None:  # fmt: skip
    _check_name(name)
    if role not in ROLES:
        raise UserError(f"--role {role!r}: one of {', '.join(ROLES)}")
    check_password_rules(password)
    salt, now = os.urandom(16), CLOCK()
    digest = hash_password(password, salt, *kdf)
    with db.transaction():
        if db.scalar("SELECT 1 FROM operators WHERE name = ?", (name,)):
            raise UserError(f"operator {name} exists (disable it, or choose another name)")
        db.execute("INSERT INTO operators(name, role, password_hash, password_salt, kdf_n, kdf_r, kdf_p, created_at,"
                   " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (name, role, digest.hex(), salt.hex(), *kdf, now, now))  # fmt: skip
        audit(db, by, "operator.added", f"operator:{name}", {"role": role})


def has_active_admin(db: Central) -> bool:
    return bool(db.scalar("SELECT count(*) FROM operators WHERE role = 'admin' AND active = 1", (), 0))


def list_operators(db: Central) -> list[dict[str, Any]]:
    rows = db.all("SELECT name, role, active, totp_secret IS NOT NULL, cert_sha256, failed_attempts, locked_until,"
                  " created_at FROM operators ORDER BY name")  # fmt: skip
    keys = ("name", "role", "active", "totp", "cert_sha256", "failed_attempts", "locked_until", "created_at")
    out = [dict(zip(keys, r)) for r in rows]
    for o in out:
        o["active"], o["totp"] = bool(o["active"]), bool(o["totp"])
    return out


def disable_operator(db: Central, name: str, by: str) -> None:
    with db.transaction():
        if not db.scalar("SELECT 1 FROM operators WHERE name = ?", (name,)):
            raise UserError(f"operator {name}: no such account")
        db.execute("UPDATE operators SET active = 0, updated_at = ? WHERE name = ?", (CLOCK(), name))
        audit(db, by, "operator.disabled", f"operator:{name}", {})


def enrol_totp(db: Central, name: str) -> tuple[str, str]:
    """A new TOTP secret for ``name`` (the caller proved who they are); returns (secret, otpauth:// URI)."""
    secret = base64.b32encode(secrets.token_bytes(20)).decode()
    with db.transaction():
        db.execute("UPDATE operators SET totp_secret = ?, totp_last_step = 0, updated_at = ? WHERE name = ?",
                   (secret, CLOCK(), name))  # fmt: skip
        audit(db, f"op:{name}", "operator.totp_enrolled", f"operator:{name}", {})
    uri = _totp(secret).get_provisioning_uri(name, ISSUER)
    return secret, uri


def register_certificate(db: Central, name: str, cert_pem: bytes, by: str) -> str:
    fingerprint = certificate_fingerprint(cert_pem)
    with db.transaction():
        if not db.scalar("SELECT 1 FROM operators WHERE name = ?", (name,)):
            raise UserError(f"operator {name}: no such account")
        db.execute("UPDATE operators SET cert_sha256 = ?, updated_at = ? WHERE name = ?", (fingerprint, CLOCK(), name))
        audit(db, by, "operator.certificate", f"operator:{name}", {"sha256": fingerprint})
    return fingerprint


# ---------------------------------------------------------------------------- sign-in

_DUMMY_SALT = b"tenpo-no-such-operator"
_COLUMNS = ("role", "password_hash", "password_salt", "kdf_n", "kdf_r", "kdf_p", "totp_secret", "totp_last_step",
            "cert_sha256", "failed_attempts", "locked_until", "active")  # fmt: skip


def sign_in(db: Central, name: str, password: str | None, code: str | None = None, *, via: str = "cli",
            certificate: tuple[bytes, bytes] | None = None, now: float | None = None) -> Operator:  # fmt: skip
    """Check a password (or a registered client certificate with its key), then the TOTP code where one is
    enrolled (always for admins); raise :class:`SignInRefused` with the reason the person may know."""
    now = CLOCK() if now is None else now
    with db.transaction():
        row = db.one(f"SELECT {', '.join(_COLUMNS)} FROM operators WHERE name = ?" + db.lock_suffix(), (name,))
        account = dict(zip(_COLUMNS, row)) if row else None
        reason, counts = _first_factor(account, password, certificate, now)
        if reason is None and account is not None:
            reason, counts = _second_factor(db, name, account, code, now)
        if reason is not None:
            _failed(db, name, account, reason, counts, via, now)
        else:
            db.execute("UPDATE operators SET failed_attempts = 0, locked_until = NULL WHERE name = ?", (name,))
            _log(db, name, True, "ok", via, now)
            audit(db, f"op:{name}", "operator.signed_in", f"operator:{name}", {"via": via})
    if reason is not None:
        raise SignInRefused(_MESSAGES.get(reason, reason).format(name=name, minutes=LOCK_S // 60))
    assert account is not None
    return Operator(name, str(account["role"]))


_MESSAGES = {
    "bad_password": "sign-in refused: wrong name or password",
    "unknown": "sign-in refused: wrong name or password",
    "inactive": "sign-in refused: wrong name or password",
    "locked": "sign-in refused: {name} is locked after too many failed sign-ins; try again in up to {minutes} minutes",
    "bad_certificate": "sign-in refused: the certificate is not the one registered for {name}, or the key is not its key",
    "admin_without_totp": "sign-in refused: {name} is an admin without TOTP; enrol first: tenpo cloud operator totp {name}",
    "totp_missing": "sign-in refused: {name} needs a TOTP code (the second line of stdin, or asked on a terminal)",
    "bad_totp": "sign-in refused: wrong or expired TOTP code",
    "reused_totp": "sign-in refused: this TOTP code was already used; wait for the next one",
}


def _first_factor(account: dict[str, Any] | None, password: str | None, certificate: tuple[bytes, bytes] | None,
                  now: float) -> tuple[str | None, bool]:  # fmt: skip
    if account is None or not account["active"]:
        if password is not None:
            hash_password(password[:MAX_PASSWORD], _DUMMY_SALT, *KDF)  # as long as a real check: no timing oracle
        return ("unknown" if account is None else "inactive"), False
    if account["locked_until"] is not None and float(account["locked_until"]) > now:
        return "locked", False
    if certificate is not None:
        cert_pem, key_pem = certificate
        registered = str(account["cert_sha256"] or "")
        ok = bool(registered) and hmac.compare_digest(certificate_fingerprint(cert_pem), registered)
        ok = ok and proves_key(cert_pem, key_pem)
        return (None, False) if ok else ("bad_certificate", True)
    if password is None or len(password) > MAX_PASSWORD:
        return "bad_password", True
    digest = hash_password(password, bytes.fromhex(account["password_salt"]), int(account["kdf_n"]),
                           int(account["kdf_r"]), int(account["kdf_p"]))  # fmt: skip
    if not hmac.compare_digest(digest.hex(), str(account["password_hash"])):
        return "bad_password", True
    return None, False


def _second_factor(db: Central, name: str, account: dict[str, Any], code: str | None, now: float) -> tuple[str | None, bool]:
    secret = account["totp_secret"]
    if secret is None:
        return ("admin_without_totp", False) if account["role"] == "admin" else (None, False)
    if not code:
        return "totp_missing", False
    step = totp_step_accepted(secret, code, now, int(account["totp_last_step"]))
    if step is None:
        reused = totp_step_accepted(secret, code, now, -1) is not None
        return ("reused_totp" if reused else "bad_totp"), True
    db.execute("UPDATE operators SET totp_last_step = ? WHERE name = ?", (step, name))
    return None, False


def _failed(db: Central, name: str, account: dict[str, Any] | None, reason: str, counts: bool, via: str, now: float) -> None:
    if account is not None and counts:
        failed = int(account["failed_attempts"]) + 1
        locked = now + LOCK_S if failed >= MAX_FAILED else None
        db.execute("UPDATE operators SET failed_attempts = ?, locked_until = ? WHERE name = ?",
                   (0 if locked else failed, locked, name))  # fmt: skip
        if locked:
            audit(db, "sign-in", "operator.locked", f"operator:{name}", {"failed": failed})
    _log(db, name, False, reason, via, now)


def _log(db: Central, name: str, ok: bool, reason: str, via: str, now: float) -> None:
    db.execute("INSERT INTO operator_signins(name, ok, reason, via, at) VALUES (?, ?, ?, ?, ?)",
               (name[:64], int(ok), reason, via, now))  # fmt: skip
