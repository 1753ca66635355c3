"""Roles on every store command (issue 14): a command that moves money or stock or reads or changes
personal data refuses to run without ``--clerk`` (one line, exit 2), with a wrong PIN (counted towards
the lockout) or, when it is a manager's, for a clerk; with the right PIN it runs and the clerk is
recorded. Real `tenpo` processes, PINs on the first line of stdin as a script gives them."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.checkout import Payment, Scan
from tenpo.edge.checkout.store import SaleOrder, commit_sale
from tenpo.edge.clerk.accounts import MAX_FAILURES, add_clerk
from tenpo.edge.cli_support import read_pin
from tenpo.edge.config import load_config
from tenpo.sandbox import tenpo_command, write_store_config
from tenpo.shared.epc import encode_sgtin96

MANAGER, CLERK, LOCKED = "1001", "2001", "2002"
MANAGER_PIN, CLERK_PIN = "902113", "135792"
PINS = {MANAGER: MANAGER_PIN, CLERK: CLERK_PIN}

# name: (role needed, argv, the table a run writes to (None: writes nothing of its own))
COMMANDS: dict[str, tuple[str, list[str], str | None]] = {
    "checkout": ("clerk", ["edge", "checkout", "--scan", "sku:A1", "--pay", "cash:200"], "sales"),
    "refund": ("manager", ["edge", "refund", "1"], "sales"),
    "stock adjust": ("manager", ["edge", "stock", "adjust", "--sku", "A1", "--qty", "3", "--reason", "count"],
                     "stock_ledger"),
    "member add": ("clerk", ["edge", "member", "add", "--name", "山田 太郎", "--phone", "09011112222"], "members"),
    "member find": ("clerk", ["edge", "member", "find", "09012345678"], "member_audit"),
    "clerk add": ("manager", ["edge", "clerk", "add", "3001", "--name", "新人", "--role", "manager"], "clerks"),
    "clerk unlock": ("manager", ["edge", "clerk", "unlock", LOCKED], None),
    "clerk list": ("manager", ["edge", "clerk", "list"], None),
    "receipt reprint": ("clerk", ["edge", "receipt", "reprint", "1"], None),
    # A delivery with no ASN behind it differs from what was expected: accepting it is a manager's decision.
    "inspect accept": ("manager", ["edge", "inspect", "accept", "S001-I000001"], "stock_ledger"),
    "inspect hold": ("clerk", ["edge", "inspect", "hold", "S001-I000001"], None),
}
MANAGER_ONLY = [name for name, (role, _argv, _table) in COMMANDS.items() if role == "manager"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a product, a member, one sale, a manager, a clerk and a locked-out clerk (hashed once)."""
    root = tmp_path_factory.mktemp("template")
    config = load_config(str(write_store_config(root, "S001", "mqtt://127.0.0.1:1")))
    db = edge_db.connect(config.database)
    with edge_db.transaction(db) as conn:
        conn.execute("INSERT INTO products(sku, jan, name, price, tax_class, version)"
                     " VALUES ('A1', '4901234567894', 'お茶', 150, 'reduced', 1)")  # fmt: skip
    replica.register_member(db, "S001", name="佐藤 花子", phone="09012345678")
    commit_sale(db, config, SaleOrder(scans=(Scan("sku:A1"),), payments=(Payment("cash", 200),)))
    reads = root / "reads.jsonl"  # three teas through the dock door, as `tenpo rfid listen --json` records them
    reads.write_text("".join(json.dumps({"epc": encode_sgtin96("4901234567894", n), "rssi": -50, "antenna": 1,
                                         "ts": 1_767_225_600.0 + n}) + "\n" for n in range(1, 4)))  # fmt: skip
    db.conn.close()
    assert main(["edge", "inspect", "--config", str(config.path), "--reads", str(reads)]) == 0
    db = edge_db.connect(config.database)
    add_clerk(db, MANAGER, "山田 店長", "manager", MANAGER_PIN)
    add_clerk(db, CLERK, "田中 さくら", "clerk", CLERK_PIN)
    add_clerk(db, LOCKED, "鈴木", "clerk", "246813")
    with edge_db.transaction(db) as conn:
        conn.execute("UPDATE clerks SET locked_until = ? WHERE clerk_id = ?", (time.time() + 3600, LOCKED))
    db.conn.close()  # the last connection checkpoints the WAL into the file
    return config.database


@pytest.fixture
def store(tmp_path: Path, template: Path) -> Path:
    """A fresh copy of the template store for each test (lockouts and counters start clean)."""
    config_path = write_store_config(tmp_path, "S001", "mqtt://127.0.0.1:1")
    database = load_config(str(config_path)).database
    for part in template.parent.glob(f"{template.stem}.*"):  # the replica and what lives beside it (its data key)
        if part.suffix != ".toml":
            shutil.copy2(part, database.with_name(part.name))
    return config_path


def tenpo(store: Path, argv: list[str], *clerk: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(tenpo_command(*argv, "--config", str(store), *clerk), input=stdin, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def query(store: Path, sql: str, *params: object) -> list[tuple]:
    conn = sqlite3.connect(load_config(str(store)).database)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def count(store: Path, table: str | None) -> int:
    return query(store, f"SELECT count(*) FROM {table}")[0][0] if table else 0


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def stdin_for(name: str, pin: str) -> str:
    return f"{pin}\n482913\n" if name == "clerk add" else f"{pin}\n"  # clerk add: then the new clerk's PIN


@pytest.mark.parametrize("name", COMMANDS)
def test_refused_without_clerk_in_one_line_exit_2_and_nothing_written_or_shown(store: Path, name: str) -> None:
    role, argv, table = COMMANDS[name]
    before = count(store, table)
    done = tenpo(store, argv, stdin=f"{PINS[MANAGER]}\n482913\n")
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    # accept: whether a manager is needed depends on the delivery, read only once a clerk is named.
    assert "--clerk" in line and ("a manager" if role == "manager" and name != "inspect accept" else "a clerk") in line
    assert done.stdout == "" and count(store, table) == before


@pytest.mark.parametrize("name", COMMANDS)
def test_refused_with_a_wrong_pin_which_counts_towards_the_lockout(store: Path, name: str) -> None:
    _role, argv, table = COMMANDS[name]
    before = count(store, table)
    done = tenpo(store, argv, "--clerk", MANAGER, stdin=stdin_for(name, "999999"))
    assert done.returncode == 1
    assert one_line(done.stderr).startswith("tenpo: wrong clerk id or PIN")
    assert done.stdout == "" and count(store, table) == before
    assert query(store, "SELECT failed_attempts FROM clerks WHERE clerk_id = ?", MANAGER) == [(1,)]
    assert query(store, "SELECT ok, reason FROM clerk_signins WHERE clerk_id = ?", MANAGER) == [(0, "bad_pin")]


@pytest.mark.parametrize("name", MANAGER_ONLY)
def test_a_managers_command_is_refused_for_a_clerk(store: Path, name: str) -> None:
    _role, argv, table = COMMANDS[name]
    before = count(store, table)
    done = tenpo(store, argv, "--clerk", CLERK, stdin=stdin_for(name, CLERK_PIN))
    assert done.returncode == 1
    assert "needs a manager" in one_line(done.stderr) and CLERK in done.stderr
    assert done.stdout == "" and count(store, table) == before
    assert query(store, "SELECT count(*) FROM clerk_actions") == [(0,)]
    assert query(store, "SELECT locked_until IS NOT NULL FROM clerks WHERE clerk_id = ?", LOCKED) == [(1,)]


@pytest.mark.parametrize("name", COMMANDS)
def test_runs_with_the_right_pin_and_records_who(store: Path, name: str) -> None:
    role, argv, table = COMMANDS[name]
    who = MANAGER if role == "manager" else CLERK
    before = count(store, table)
    done = tenpo(store, argv, "--clerk", who, stdin=stdin_for(name, PINS[who]))
    assert done.returncode == 0, done.stderr
    assert PINS[who] not in done.stdout + done.stderr
    if table:
        assert count(store, table) > before
    # Who ran it, next to the sign-in log (a find is in the personal-data audit instead; a list changes nothing).
    recorded = [] if name in ("member find", "clerk list") else [(who, f"edge {name}")]
    assert query(store, "SELECT clerk_id, command FROM clerk_actions") == recorded


def test_a_refund_stock_adjustment_and_unlock_show_who_did_them(store: Path) -> None:
    assert tenpo(store, COMMANDS["refund"][1], "--clerk", MANAGER, stdin=f"{MANAGER_PIN}\n").returncode == 0
    (receipt,) = query(store, "SELECT receipt FROM sales WHERE kind = 'refund'")[0]
    assert "担当 山田 店長" in receipt
    assert query(store, "SELECT action, manager_id FROM clerk_approvals") == [("refund", MANAGER)]
    adjust = tenpo(store, COMMANDS["stock adjust"][1], "--clerk", MANAGER, stdin=f"{MANAGER_PIN}\n")
    assert adjust.returncode == 0, adjust.stderr
    (payload,) = query(store, "SELECT payload FROM outbox WHERE type = 'stock.adjusted'")[0]
    assert json.loads(payload)["reason"] == f"count (clerk {MANAGER})", "HQ sees who adjusted"
    assert tenpo(store, COMMANDS["clerk unlock"][1], "--clerk", MANAGER, stdin=f"{MANAGER_PIN}\n").returncode == 0
    assert query(store, "SELECT locked_until FROM clerks WHERE clerk_id = ?", LOCKED) == [(None,)]


def test_member_find_is_audited_like_a_profile_view_naming_the_clerk(store: Path) -> None:
    (member_id,) = query(store, "SELECT member_id FROM members")[0]
    done = tenpo(store, ["edge", "member", "find", "090-1234-5678"], "--clerk", CLERK, stdin=f"{CLERK_PIN}\n")
    assert done.returncode == 0 and member_id in done.stdout
    assert query(store, "SELECT clerk_id, member_id, action FROM member_audit") == [(CLERK, member_id, "view")]
    (payload,) = query(store, "SELECT payload FROM outbox WHERE type = 'member.viewed'")[0]
    assert json.loads(payload) | {"at": 0} == {"clerk_id": CLERK, "member_id": member_id, "action": "view", "at": 0}
    nobody = tenpo(store, ["edge", "member", "find", "090-0000-0000"], "--clerk", CLERK, stdin=f"{CLERK_PIN}\n")
    assert nobody.returncode == 1 and len(query(store, "SELECT * FROM member_audit")) == 1, "no one shown, no view"


def test_the_first_manager_needs_no_clerk_and_then_no_one_adds_clerks_without_a_manager(tmp_path: Path) -> None:
    config = write_store_config(tmp_path, "S001", "mqtt://127.0.0.1:1")
    assert main(["edge", "init", "--config", str(config)]) == 0
    first = tenpo(config, ["edge", "clerk", "add", "1001", "--name", "店長", "--role", "manager"], stdin="902113\n")
    assert first.returncode == 0, first.stderr
    again = tenpo(config, ["edge", "clerk", "add", "6666", "--name", "x", "--role", "manager"], stdin="246813\n")
    assert again.returncode == 2 and "needs a manager" in again.stderr
    clerk = tenpo(config, ["edge", "clerk", "add", "2001", "--name", "田中"], "--clerk", "1001",
                  stdin="902113\n135792\n")  # fmt: skip
    assert clerk.returncode == 0, clerk.stderr
    # A clerk cannot make themselves (or anyone) a manager.
    escalate = tenpo(config, ["edge", "clerk", "add", "2001", "--name", "田中", "--role", "manager", "--replace"],
                     "--clerk", "2001", stdin="135792\n135792\n")  # fmt: skip
    assert escalate.returncode == 1 and "needs a manager" in escalate.stderr
    assert query(config, "SELECT clerk_id, role FROM clerks ORDER BY clerk_id") == [("1001", "manager"),
                                                                                      ("2001", "clerk")]


def test_wrong_pins_on_store_commands_lock_the_clerk_out_as_at_the_till(store: Path, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("000001\n" * MAX_FAILURES + f"{CLERK_PIN}\n"))
    argv = ["edge", "member", "find", "佐藤", "--config", str(store), "--clerk", CLERK]
    for _ in range(MAX_FAILURES):
        assert main(argv) == 1
    assert main(argv) == 1, "locked: the right PIN does not help"
    assert query(store, "SELECT reason FROM clerk_signins WHERE clerk_id = ? ORDER BY id DESC LIMIT 1", CLERK) == [
        ("locked",)]
    assert query(store, "SELECT count(*) FROM member_audit") == [(0,)]


def test_on_a_terminal_the_pin_is_asked_once_without_echo() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    prompts: list[str] = []
    assert read_pin(Tty(), lambda prompt: prompts.append(prompt) or "902113", prompt="PIN for 1001: ",
                    confirm=False) == "902113"  # fmt: skip
    assert prompts == ["PIN for 1001: "]
