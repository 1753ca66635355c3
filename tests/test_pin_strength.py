"""PINs that hold (issue 14): 6 digits at least (a store may ask for more, never fewer), scrypt at 64 MiB
with its cost kept per hash, old cheaper hashes still accepted and re-hashed at the next good sign-in,
and the lockout unchanged. The offline search figure is bench/bench_pin.py's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tenpo.edge import db as edge_db
from tenpo.edge.clerk import accounts
from tenpo.edge.clerk.accounts import (
    DEFAULT_COST,
    LEGACY_COST,
    ScryptCost,
    SignInRefused,
    add_clerk,
    min_pin_length,
    pin_problem,
    sign_in,
)
from tenpo.sandbox import write_store_config
from tenpo.shared.errors import ConfigError, UserError


def stored(db, clerk_id: str) -> tuple[bytes, bytes, int, int, int]:  # type: ignore[no-untyped-def]
    return db.conn.execute("SELECT pin_hash, pin_salt, kdf_n, kdf_r, kdf_p FROM clerks WHERE clerk_id = ?",
                           (clerk_id,)).fetchone()  # fmt: skip


@pytest.fixture
def db(tmp_path: Path):
    database = edge_db.connect(tmp_path / "S001.db")
    yield database
    database.conn.close()


@pytest.mark.parametrize("pin", ["1357", "24680", "13579"])
def test_a_pin_under_six_digits_is_refused(db, pin: str) -> None:
    assert pin_problem(pin) == "PIN: at least 6 digits"
    with pytest.raises(UserError, match="at least 6 digits"):
        add_clerk(db, "2001", "田中", "clerk", pin)
    assert db.conn.execute("SELECT count(*) FROM clerks").fetchone()[0] == 0


def test_a_store_may_ask_for_longer_pins_but_never_shorter(db) -> None:
    assert min_pin_length({}) == 6
    assert min_pin_length({"min_pin_length": 8}) == 8
    for bad in (4, 5, 13, "8", True):
        with pytest.raises(ConfigError, match="min_pin_length"):
            min_pin_length({"min_pin_length": bad})
    with pytest.raises(UserError, match="at least 8 digits"):
        add_clerk(db, "2001", "田中", "clerk", "2468135", min_length=8)
    assert pin_problem("2468135", min_length=4) is None  # a lower ask is raised to the floor, not obeyed
    assert pin_problem("24681", min_length=4) == "PIN: at least 6 digits"


def test_the_hash_costs_64_mib_and_its_parameters_are_stored_with_it(db) -> None:
    add_clerk(db, "2001", "田中", "clerk", "482913")
    digest, salt, n, r, p = stored(db, "2001")
    assert (n, r, p) == (DEFAULT_COST.n, DEFAULT_COST.r, DEFAULT_COST.p)
    assert 128 * n * r * p >= 64 * 2**20, "scrypt's working memory per guess"
    assert len(salt) == 16 and b"482913" not in digest
    assert accounts.hash_pin("482913", salt, ScryptCost(n, r, p)) == digest


def test_an_old_parameter_hash_still_verifies_and_is_upgraded_on_sign_in(db) -> None:
    add_clerk(db, "2001", "田中", "clerk", "482913", cost=LEGACY_COST)  # as made before issue 14
    old_digest, old_salt, *old_cost = stored(db, "2001")
    assert tuple(old_cost) == (2**14, 8, 1)
    assert sign_in(db, "2001", "482913").clerk_id == "2001"
    digest, salt, n, r, p = stored(db, "2001")
    assert (n, r, p) == (DEFAULT_COST.n, DEFAULT_COST.r, DEFAULT_COST.p)
    assert digest != old_digest and salt != old_salt
    assert accounts.hash_pin("482913", salt, DEFAULT_COST) == digest
    assert sign_in(db, "2001", "482913").clerk_id == "2001", "the upgraded hash verifies"
    with pytest.raises(SignInRefused):
        sign_in(db, "2001", "482914")
    assert stored(db, "2001")[0] == digest, "a wrong PIN changes nothing"


def test_a_wrong_pin_never_upgrades_and_the_lockout_is_as_before(db) -> None:
    add_clerk(db, "2001", "田中", "clerk", "482913", cost=LEGACY_COST)
    now = 1_000.0
    for _ in range(accounts.MAX_FAILURES - 1):
        with pytest.raises(SignInRefused, match="(try|tries) left"):
            sign_in(db, "2001", "000001", now)
    with pytest.raises(SignInRefused, match="locked") as locked:
        sign_in(db, "2001", "000001", now)
    assert locked.value.locked_until == now + accounts.LOCKOUT_S
    assert stored(db, "2001")[2] == 2**14, "no good PIN yet: the old hash stays"
    with pytest.raises(SignInRefused, match="locked"):
        sign_in(db, "2001", "482913", now + 1)
    assert sign_in(db, "2001", "482913", now + accounts.LOCKOUT_S + 1).clerk_id == "2001"
    assert stored(db, "2001")[2] == DEFAULT_COST.n


def test_a_four_digit_pin_from_before_still_signs_in_and_is_flagged_for_a_reset(db) -> None:
    # Bypass today's policy as an old store's row would: a 4-digit PIN hashed at the old cost.
    salt = b"0123456789abcdef"
    with edge_db.transaction(db) as conn:
        conn.execute("INSERT INTO clerks(clerk_id, name, role, pin_hash, pin_salt, kdf_n, kdf_r, kdf_p, created_at,"
                     " updated_at) VALUES ('2001', '田中', 'clerk', ?, ?, 16384, 8, 1, 0, 0)",
                     (accounts.hash_pin("2468", salt, LEGACY_COST), salt))  # fmt: skip
    clerk = sign_in(db, "2001", "2468")
    assert clerk.short_pin and stored(db, "2001")[2] == DEFAULT_COST.n


def test_a_store_command_upgrades_an_old_hash_through_a_real_process(tmp_path: Path) -> None:
    config = write_store_config(tmp_path, "S001", "mqtt://127.0.0.1:1")
    database = edge_db.connect(tmp_path / "S001.db")
    add_clerk(database, "1001", "店長", "manager", "482913", cost=LEGACY_COST)
    database.conn.close()
    done = subprocess.run([sys.executable, "-m", "tenpo", "edge", "clerk", "list", "--clerk", "1001", "--config",
                           str(config)], input="482913\n", capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1001" in done.stdout and "482913" not in done.stdout + done.stderr
    database = edge_db.connect(tmp_path / "S001.db")
    assert stored(database, "1001")[2:] == (DEFAULT_COST.n, DEFAULT_COST.r, DEFAULT_COST.p)
    database.conn.close()
