"""Clerk accounts: PINs as scrypt hashes, sign-in with lockout, and what each role may do.

A PIN is short, so the hash must be slow and memory-hard (scrypt, RFC 7914): an attacker with a copy
of the store file pays 64 MiB and a quarter of a second per guess on one core (``python -m bench pin``
prints the figure and the time to try every 6-digit PIN; docs/roles.md). Each hash keeps its own salt
and cost (n, r, p), so the cost can be raised: an older, cheaper hash still verifies and is re-hashed
with ``DEFAULT_COST`` at the clerk's next good sign-in. The lockout stops guessing at the till itself:
after ``MAX_FAILURES`` wrong PINs in a row the clerk id is locked for ``LOCKOUT_S``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import time
from dataclasses import dataclass

import sqlite_utils

from tenpo.edge.db import transaction
from tenpo.shared.errors import ConfigError, UserError

MIN_PIN_LENGTH = 6  # the floor: [clerks] min_pin_length may raise it, never lower it
MAX_PIN_LENGTH = 12
MAX_FAILURES = 5
LOCKOUT_S = 300.0


class Role(enum.StrEnum):
    CLERK = "clerk"
    MANAGER = "manager"


class Action(enum.StrEnum):
    """What needs a decision about who may do it."""

    REFUND = "refund"
    STOCK_ADJUST = "stock_adjust"
    INSPECTION_OVERRIDE = "inspection_override"  # accept a delivery that does not match its ASN
    MEMBER_EXPORT = "member_export"
    CLERK_ADMIN = "clerk_admin"  # add a clerk, reset a PIN, lift a lockout


MANAGER_ONLY = frozenset(Action)


def allowed(role: Role, action: Action) -> bool:
    return role is Role.MANAGER or action not in MANAGER_ONLY


@dataclass(frozen=True, slots=True)
class ScryptCost:
    """n: CPU/memory cost (power of two), r: block size, p: parallelism. Memory is 128·n·r bytes."""

    n: int = 2**16
    r: int = 8
    p: int = 1

    @property
    def work(self) -> int:
        """Proportional to the time and memory one guess costs."""
        return self.n * self.r * self.p


DEFAULT_COST = ScryptCost()  # 64 MiB; ~0.25 s per hash on one x86 core (bench/bench_pin.py)
LEGACY_COST = ScryptCost(n=2**14)  # what PINs were hashed with before: 16 MiB, still verified, then upgraded


@dataclass(frozen=True, slots=True)
class Clerk:
    clerk_id: str
    name: str
    role: Role
    short_pin: bool = False  # signed in with a PIN shorter than today's minimum: a manager should reset it

    @property
    def is_manager(self) -> bool:
        return self.role is Role.MANAGER


class SignInRefused(UserError):
    """Wrong id or PIN, or locked; ``locked_until`` set when the clerk id is locked."""

    def __init__(self, message: str, locked_until: float | None = None) -> None:
        super().__init__(message)
        self.locked_until = locked_until


# ---------------------------------------------------------------------------- pure rules


def pin_problem(pin: str, min_length: int = MIN_PIN_LENGTH) -> str | None:
    """Why a PIN is refused, or None. Digits only, so it can be typed on a till's number pad."""
    min_length = max(min_length, MIN_PIN_LENGTH)
    if not pin.isascii() or not pin.isdigit():
        return "PIN: digits only"
    if len(pin) < min_length:
        return f"PIN: at least {min_length} digits"
    if len(pin) > MAX_PIN_LENGTH:
        return f"PIN: at most {MAX_PIN_LENGTH} digits"
    if len(set(pin)) == 1:
        return "PIN: not one digit repeated"
    steps = {int(b) - int(a) for a, b in zip(pin, pin[1:])}
    if steps in ({1}, {-1}):
        return "PIN: not a run like 1234 or 4321"
    return None


def hash_pin(pin: str, salt: bytes, cost: ScryptCost) -> bytes:
    return hashlib.scrypt(pin.encode(), salt=salt, n=cost.n, r=cost.r, p=cost.p, maxmem=256 * cost.n * cost.r + 2**20,
                          dklen=32)  # fmt: skip


def min_pin_length(section: dict[str, object], where: str = "[clerks]") -> int:
    """``min_pin_length`` of the store config's ``[clerks]`` table: 6 (the default) up to 12."""
    value = section.get("min_pin_length", MIN_PIN_LENGTH)
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_PIN_LENGTH <= value <= MAX_PIN_LENGTH:
        raise ConfigError(f"{where} min_pin_length: a whole number from {MIN_PIN_LENGTH} to {MAX_PIN_LENGTH}, "
                          f"not {value!r}")  # fmt: skip
    return value


def needs_rehash(stored: ScryptCost, target: ScryptCost = DEFAULT_COST) -> bool:
    """A hash made with less work than ``target`` is redone at the next good sign-in (never lowered)."""
    return stored.work < target.work or stored.n < target.n


def check_clerk_id(clerk_id: str) -> str:
    clerk_id = clerk_id.strip()
    if not clerk_id or len(clerk_id) > 32 or not all(ch.isalnum() or ch in "-_" for ch in clerk_id):
        raise UserError(f"clerk id {clerk_id!r}: 1 to 32 letters, digits, - or _")
    return clerk_id


# ---------------------------------------------------------------------------- store


def add_clerk(db: sqlite_utils.Database, clerk_id: str, name: str, role: str, pin: str,
              cost: ScryptCost = DEFAULT_COST, replace: bool = False, min_length: int = MIN_PIN_LENGTH) -> Clerk:  # fmt: skip
    """Create (or with ``replace`` reset) a clerk account; refuses weak PINs and unknown roles."""
    clerk_id = check_clerk_id(clerk_id)
    if not name.strip():
        raise UserError("name: required")
    try:
        chosen = Role(role)
    except ValueError:
        raise UserError(f"role {role!r}: expected clerk or manager") from None
    problem = pin_problem(pin, min_length)
    if problem:
        raise UserError(problem)
    salt = os.urandom(16)
    digest = hash_pin(pin, salt, cost)
    now = time.time()
    with transaction(db) as conn:
        exists = conn.execute("SELECT 1 FROM clerks WHERE clerk_id = ?", (clerk_id,)).fetchone()
        if exists and not replace:
            raise UserError(f"clerk {clerk_id}: already exists (use --replace to reset name, role and PIN)")
        conn.execute(
            "INSERT INTO clerks(clerk_id, name, role, pin_hash, pin_salt, kdf_n, kdf_r, kdf_p, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(clerk_id) DO UPDATE SET name = excluded.name,"
            " role = excluded.role, pin_hash = excluded.pin_hash, pin_salt = excluded.pin_salt, kdf_n = excluded.kdf_n,"
            " kdf_r = excluded.kdf_r, kdf_p = excluded.kdf_p, failed_attempts = 0, locked_until = NULL, active = 1,"
            " updated_at = excluded.updated_at",
            (clerk_id, name.strip(), chosen.value, digest, salt, cost.n, cost.r, cost.p, now, now),
        )
    return Clerk(clerk_id, name.strip(), chosen)


def list_clerks(db: sqlite_utils.Database) -> list[dict[str, object]]:
    rows = db.conn.execute(
        "SELECT clerk_id, name, role, active, failed_attempts, locked_until FROM clerks ORDER BY clerk_id"
    ).fetchall()
    keys = ("clerk_id", "name", "role", "active", "failed_attempts", "locked_until")
    return [dict(zip(keys, row)) for row in rows]


def has_manager(db: sqlite_utils.Database) -> bool:
    """Whether an active manager exists: until one does, `edge clerk add` may create the first (bootstrap)."""
    return db.conn.execute("SELECT 1 FROM clerks WHERE role = 'manager' AND active = 1 LIMIT 1").fetchone() is not None


def sign_in(db: sqlite_utils.Database, clerk_id: str, pin: str, now: float | None = None,
            upgrade_to: ScryptCost = DEFAULT_COST) -> Clerk:  # fmt: skip
    """The clerk, or SignInRefused. Every attempt is logged; wrong PINs count towards a lockout.

    The hash is computed before the write transaction so a slow KDF never holds the database lock.
    Unknown ids get the same message as a wrong PIN, so the till does not confirm which ids exist.
    A good PIN whose hash is cheaper than ``upgrade_to`` is re-hashed with a new salt at that cost.
    """
    now = time.time() if now is None else now
    typed = clerk_id.strip()
    row = db.conn.execute(
        "SELECT name, role, pin_hash, pin_salt, kdf_n, kdf_r, kdf_p, locked_until, active FROM clerks WHERE clerk_id = ?",
        (typed,),
    ).fetchone()
    if row is None:
        _log(db, typed, False, "unknown", now)
        raise SignInRefused("wrong clerk id or PIN")
    name, role, digest, salt, n, r, p, locked_until, active = row
    if not active:
        _log(db, typed, False, "inactive", now)
        raise SignInRefused("wrong clerk id or PIN")
    if locked_until is not None and locked_until > now:
        _log(db, typed, False, "locked", now)
        raise SignInRefused(f"clerk {typed}: locked after {MAX_FAILURES} wrong PINs; try again at "
                            f"{time.strftime('%H:%M', time.localtime(locked_until))} or ask a manager", locked_until)  # fmt: skip
    stored = ScryptCost(n, r, p)
    good = hmac.compare_digest(hash_pin(pin, salt, stored), digest)
    upgrade = None
    if good and needs_rehash(stored, upgrade_to):
        new_salt = os.urandom(16)
        upgrade = (hash_pin(pin, new_salt, upgrade_to), new_salt)
    with transaction(db) as conn:
        if good:
            conn.execute("UPDATE clerks SET failed_attempts = 0, locked_until = NULL WHERE clerk_id = ?", (typed,))
            if upgrade is not None:  # only if the PIN was not reset meanwhile by another process
                conn.execute("UPDATE clerks SET pin_hash = ?, pin_salt = ?, kdf_n = ?, kdf_r = ?, kdf_p = ?,"
                             " updated_at = ? WHERE clerk_id = ? AND pin_hash = ?",
                             (*upgrade, upgrade_to.n, upgrade_to.r, upgrade_to.p, now, typed, digest))  # fmt: skip
            _log_in(conn, typed, True, "ok", now)
            return Clerk(typed, name, Role(role), short_pin=len(pin) < MIN_PIN_LENGTH)
        (failures,) = conn.execute(
            "UPDATE clerks SET failed_attempts = failed_attempts + 1 WHERE clerk_id = ? RETURNING failed_attempts", (typed,)
        ).fetchone()
        until = None
        if failures >= MAX_FAILURES:
            until = now + LOCKOUT_S
            conn.execute("UPDATE clerks SET failed_attempts = 0, locked_until = ? WHERE clerk_id = ?", (until, typed))
        _log_in(conn, typed, False, "bad_pin", now)
    if until is not None:
        raise SignInRefused(f"clerk {typed}: locked for {int(LOCKOUT_S // 60)} minutes after {MAX_FAILURES} wrong PINs",
                            until)  # fmt: skip
    left = MAX_FAILURES - failures
    raise SignInRefused(f"wrong clerk id or PIN ({left} {'try' if left == 1 else 'tries'} left before a lockout)")


def unlock(db: sqlite_utils.Database, clerk_id: str) -> None:
    with transaction(db) as conn:
        if not conn.execute("UPDATE clerks SET failed_attempts = 0, locked_until = NULL WHERE clerk_id = ?",
                            (clerk_id,)).rowcount:  # fmt: skip
            raise UserError(f"clerk {clerk_id}: not found")


def _log(db: sqlite_utils.Database, clerk_id: str, ok: bool, reason: str, now: float) -> None:
    with transaction(db) as conn:
        _log_in(conn, clerk_id, ok, reason, now)


def _log_in(conn, clerk_id: str, ok: bool, reason: str, now: float) -> None:  # type: ignore[no-untyped-def]
    conn.execute("INSERT INTO clerk_signins(clerk_id, ok, reason, at) VALUES (?, ?, ?, ?)",
                 (clerk_id[:64], int(ok), reason, now))  # fmt: skip


# ---------------------------------------------------------------------------- who ran which store command


def record_action(db: sqlite_utils.Database, clerk: Clerk, command: str, ref: str | None,
                  now: float | None = None) -> None:  # fmt: skip
    with transaction(db) as conn:
        conn.execute("INSERT INTO clerk_actions(clerk_id, role, command, ref, at) VALUES (?, ?, ?, ?, ?)",
                     (clerk.clerk_id, clerk.role.value, command, None if ref is None else ref[:200],
                      time.time() if now is None else now))  # fmt: skip


def recent_actions(db: sqlite_utils.Database, limit: int = 50) -> list[dict[str, object]]:
    keys = ("clerk_id", "role", "command", "ref", "at")
    rows = db.conn.execute(f"SELECT {', '.join(keys)} FROM clerk_actions ORDER BY id DESC LIMIT ?", (limit,))
    return [dict(zip(keys, row)) for row in rows]
