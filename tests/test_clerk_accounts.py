"""Clerk accounts (scrypt PINs, lockout, roles), the personal-data audit and reservations with their
outbox events, `tenpo edge clerk ...`, and HQ's planners for the events the terminal sends."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tenpo.cloud.db import Central
from tenpo.cloud.effects import plan_event
from tenpo.cloud.plan import Origin, PayloadError, Plan
from tenpo.edge import db as edge_db
from tenpo.edge.clerk import accounts, records
from tenpo.edge.clerk.accounts import Action, Role, SignInRefused, add_clerk, allowed, pin_problem, sign_in
from tenpo.edge.clerk.cli import read_pin
from tenpo.shared.errors import UserError
from tenpo.shared.protocol import Event
from tests.test_clerk_support import CLERK, MANAGER, PIN, make_store


@pytest.fixture
def store(tmp_path: Path):
    config = make_store(tmp_path / "S001")
    db = edge_db.connect(config.database)
    yield config, db
    db.conn.close()


@pytest.mark.parametrize(
    "pin, problem",
    [("123", "at least 6"), ("2468", "at least 6"), ("12a4", "digits only"), ("７７７７７７", "digits only"),
     ("000000", "repeated"), ("123456", "run"), ("9876543", "run"), ("1234567890123", "at most 12"),
     ("902113", None), ("24681357", None)],
)  # fmt: skip
def test_pin_policy(pin: str, problem: str | None) -> None:
    found = pin_problem(pin)
    assert (found is None) if problem is None else (problem in found)  # type: ignore[operator]


def test_pin_is_stored_only_as_a_memory_hard_hash(store) -> None:
    _config, db = store
    digest, salt, n, r, p = db.conn.execute(
        "SELECT pin_hash, pin_salt, kdf_n, kdf_r, kdf_p FROM clerks WHERE clerk_id = ?", (MANAGER,)
    ).fetchone()
    assert PIN.encode() not in digest and len(salt) == 16
    assert 128 * n * r >= 16 * 2**20  # scrypt working memory: at least 16 MiB per guess
    other_salt = db.conn.execute("SELECT pin_salt FROM clerks WHERE clerk_id = ?", (CLERK,)).fetchone()[0]
    assert other_salt != salt  # the same PIN hashes differently for two clerks
    assert accounts.hash_pin(PIN, salt, accounts.ScryptCost(n, r, p)) == digest


def test_sign_in_good_bad_and_lockout_then_unlock(store) -> None:
    _config, db = store
    assert sign_in(db, MANAGER, PIN).role is Role.MANAGER
    assert sign_in(db, f" {CLERK} ", PIN).role is Role.CLERK
    with pytest.raises(SignInRefused, match="wrong clerk id or PIN"):
        sign_in(db, "9999", PIN)  # unknown id: same message as a wrong PIN
    now = 1000.0
    for left in (4, 3, 2, 1):
        with pytest.raises(SignInRefused, match=f"{left} tr"):
            sign_in(db, CLERK, "1357", now)
    with pytest.raises(SignInRefused, match="locked for 5 minutes") as locked:
        sign_in(db, CLERK, "1357", now)
    assert locked.value.locked_until == now + accounts.LOCKOUT_S
    with pytest.raises(SignInRefused, match="locked after 5 wrong PINs"):
        sign_in(db, CLERK, PIN, now + 10)  # the right PIN does not help while locked
    assert sign_in(db, CLERK, PIN, now + accounts.LOCKOUT_S + 1).clerk_id == CLERK
    reasons = [r for (r,) in db.conn.execute("SELECT reason FROM clerk_signins WHERE clerk_id = ? ORDER BY id", (CLERK,))]
    assert reasons == ["ok", "bad_pin", "bad_pin", "bad_pin", "bad_pin", "bad_pin", "locked", "ok"]
    for _ in range(5):
        with pytest.raises(SignInRefused):
            sign_in(db, CLERK, "1357", now)
    accounts.unlock(db, CLERK)
    assert sign_in(db, CLERK, PIN, now).clerk_id == CLERK


def test_a_good_sign_in_resets_the_count_of_wrong_pins(store) -> None:
    _config, db = store
    for _ in range(4):
        with pytest.raises(SignInRefused):
            sign_in(db, CLERK, "1357")
    sign_in(db, CLERK, PIN)
    with pytest.raises(SignInRefused, match="4 tries left"):
        sign_in(db, CLERK, "1357")


def test_roles() -> None:
    for action in Action:
        assert allowed(Role.MANAGER, action)
        assert not allowed(Role.CLERK, action)


def test_add_clerk_refusals(store) -> None:
    _config, db = store
    with pytest.raises(UserError, match="already exists"):
        add_clerk(db, MANAGER, "x", "manager", "902113")
    with pytest.raises(UserError, match="role 'boss'"):
        add_clerk(db, "3001", "x", "boss", "902113")
    with pytest.raises(UserError, match="clerk id"):
        add_clerk(db, "a b", "x", "clerk", "902113")
    with pytest.raises(UserError, match="at least 6"):
        add_clerk(db, "3001", "x", "clerk", "12")


def test_profile_view_audit_and_its_event_commit_together(store) -> None:
    _config, db = store
    seq = records.record_member_access(db, MANAGER, "M-0001", "view", now=5.0)
    row = db.conn.execute("SELECT clerk_id, member_id, action, at, event_seq FROM member_audit").fetchone()
    assert row == (MANAGER, "M-0001", "view", 5.0, seq)
    event = db.conn.execute("SELECT type, payload FROM outbox WHERE seq = ?", (seq,)).fetchone()
    assert event[0] == "member.viewed"
    assert json.loads(event[1]) == {"clerk_id": MANAGER, "member_id": "M-0001", "action": "view", "at": 5.0}


def test_reservation_sends_an_event_and_refuses_what_makes_no_sense(store) -> None:
    _config, db = store
    rid = records.request_reservation(db, "S001", CLERK, sku="UMBRELLA", qty=2, from_store="S002", member_id="M-0001")
    assert rid == "S001-P000001"
    payload = json.loads(db.conn.execute("SELECT payload FROM outbox WHERE type = 'reservation.requested'").fetchone()[0])
    assert payload | {"at": 0} == {"reservation_id": rid, "sku": "UMBRELLA", "qty": 2, "from_store": "S002",
                                   "pickup_store": "S001", "member_id": "M-0001", "customer": None,
                                   "clerk_id": CLERK, "at": 0}  # fmt: skip
    # A hold here is kept at once, within what this store has available (none of UMBRELLA here).
    for kwargs, message in (({"qty": 0}, "qty"), ({"from_store": "S001"}, "available here"), ({"sku": "NOPE"}, "sku"),
                            ({"member_id": None}, "customer")):  # fmt: skip
        args = {"sku": "UMBRELLA", "qty": 1, "from_store": "S002", "member_id": "M-0001", **kwargs}
        with pytest.raises(UserError, match=message):
            records.request_reservation(db, "S001", CLERK, **args)
    assert db.conn.execute("SELECT count(*) FROM pickup_reservations").fetchone()[0] == 1


# ---------------------------------------------------------------------------- CLI


def test_read_pin_asks_twice_on_a_terminal_and_reads_a_line_from_a_pipe() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["246813", "246813"])
    assert read_pin(Tty(), lambda prompt: next(answers)) == "246813"
    differ = iter(["246813", "864213"])
    with pytest.raises(UserError, match="differ"):
        read_pin(Tty(), lambda prompt: next(differ))
    assert read_pin(io.StringIO("902113\n")) == "902113"
    with pytest.raises(UserError, match="stdin"):
        read_pin(io.StringIO(""))


def run_tenpo(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenpo", *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_clerk_add_command(store) -> None:
    config, db = store
    # The store has a manager (1001): adding a clerk takes a manager's id, that PIN first, then the new PIN.
    done = run_tenpo("edge", "clerk", "add", "3001", "--name", "佐々木", "--role", "manager", "--clerk", MANAGER,
                     "--config", str(config.path), stdin=f"{PIN}\n902113\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "clerk 3001" in done.stdout and "902113" not in done.stdout
    assert sign_in(db, "3001", "902113").is_manager
    short = run_tenpo("edge", "clerk", "add", "3002", "--name", "x", "--clerk", "3001", "--config", str(config.path),
                      stdin="902113\n12\n")  # fmt: skip
    assert short.returncode == 1 and short.stderr.strip() == "tenpo: PIN: at least 6 digits"
    listed = run_tenpo("edge", "clerk", "list", "--json", "--clerk", "3001", "--config", str(config.path),
                       stdin="902113\n")  # fmt: skip
    assert [c["clerk_id"] for c in json.loads(listed.stdout)] == [MANAGER, CLERK, "3001"]


# ---------------------------------------------------------------------------- HQ planners


def _apply(url: str, event_type: str, payload: dict, seq: int = 7) -> list[tuple]:
    db = Central(url)
    try:
        plan = Plan()
        plan_event(plan, Origin("S001", "stream"), Event(seq, "id", event_type, 1, 0, payload), 100.0)
        with db.transaction():
            for sql, rows in plan.rows.items():
                db.executemany(sql, rows)
        return db.all("SELECT actor, action, subject, detail, at FROM audit_log ORDER BY id")
    finally:
        db.close()


def test_hq_records_member_views_in_the_audit_log(central_url: str) -> None:
    rows = _apply(central_url, "member.viewed", {"clerk_id": "1001", "member_id": "M-0001", "action": "export", "at": 42.5})
    assert [r[:3] + (r[4],) for r in rows] == [("S001/1001", "member.export", "M-0001", 42.5)]
    assert json.loads(rows[0][3]) == {"store_seq": 7}


def test_hq_records_reservations(central_url: str) -> None:
    payload = {"reservation_id": "S001-P000001", "sku": "UMBRELLA", "qty": 2, "from_store": "S002",
               "member_id": "M-0001", "customer": None, "clerk_id": "2001", "at": 9.0}  # fmt: skip
    rows = _apply(central_url, "reservation.requested", payload)
    assert rows[0][:3] == ("S001/2001", "reservation.requested", "S002/UMBRELLA")
    assert json.loads(rows[0][3])["qty"] == 2


@pytest.mark.parametrize(
    "event_type, payload, field",
    [("member.viewed", {"member_id": "M", "action": "view"}, "clerk_id"),
     ("member.viewed", {"clerk_id": "1", "member_id": "M", "action": "delete"}, "action"),
     ("member.viewed", {"clerk_id": "1", "member_id": "M", "action": "view", "at": "noon"}, "at"),
     ("reservation.requested", {"reservation_id": "S002-P1", "sku": "A", "qty": 1, "from_store": "S2", "clerk_id": "1"},
      "reservation_id"),
     ("reservation.requested", {"reservation_id": "S001-P1", "sku": "A", "qty": 0, "from_store": "S2", "clerk_id": "1"},
      "qty")],
)  # fmt: skip
def test_hq_planners_name_the_bad_field(event_type: str, payload: dict, field: str) -> None:
    with pytest.raises(PayloadError, match=f"^{field}:"):
        plan_event(Plan(), Origin("S001", "s"), Event(1, "id", event_type, 1, 0, payload), 1.0)
