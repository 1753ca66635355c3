"""The store replica and its commands: config errors, durability settings, outbox numbering, lookups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.outbox import append_event, pending, read_counter
from tenpo.sandbox import write_store_config
from tenpo.shared.errors import UserError
from tests.support.clerks import AS_CLERK, AS_MANAGER, PIN_LINE, add_store_clerks


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_store_config(tmp_path, "S001", "mqtt://127.0.0.1:1")


@pytest.fixture
def store(config_path: Path):
    assert main(["edge", "init", "--config", str(config_path)]) == 0
    db = edge_db.connect(config_path.parent / "S001.db")
    with edge_db.transaction(db) as conn:
        conn.execute("INSERT INTO products(sku, jan, name, price, tax_class, version) "
                     "VALUES ('A1', '4901234567894', 'お茶', 150, 'reduced', 1)")
    yield db
    db.conn.close()


# ---------------------------------------------------------------------------- config


BAD_CONFIGS = {
    "missing store section": ('[broker]\nurl = "mqtt://h:1883"\n', "[store]: missing section"),
    "missing id": ('[store]\nname = "x"\ndatabase = "x.db"\n[broker]\nurl = "mqtt://h"\n', "store.id: missing"),
    "bad id": ('[store]\nid = "S 1/#"\nname = "x"\ndatabase = "x.db"\n[broker]\nurl = "mqtt://h"\n', "store.id:"),
    "id not a string": ('[store]\nid = 7\nname = "x"\ndatabase = "x.db"\n[broker]\nurl = "mqtt://h"\n', "store.id: must be"),
    "missing database": ('[store]\nid = "S1"\nname = "x"\n[broker]\nurl = "mqtt://h"\n', "store.database: missing"),
    "missing broker url": ('[store]\nid = "S1"\nname = "x"\ndatabase = "x.db"\n[broker]\n', "broker.url: missing"),
    "bad scheme": ('[store]\nid = "S1"\nname = "x"\ndatabase = "x.db"\n[broker]\nurl = "http://h"\n', "broker.url:"),
    "bad port": ('[store]\nid = "S1"\nname = "x"\ndatabase = "x.db"\n[broker]\nurl = "mqtt://h:99999"\n', "bad port"),
    "negative sync": (
        '[store]\nid = "S1"\nname = "x"\ndatabase = "x.db"\n[broker]\nurl = "mqtt://h"\n[sync]\nbatch_size = -3\n',
        "sync.batch_size",
    ),
    "not toml": ("[store\nid=", "not valid TOML"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_gives_one_line_naming_the_field_and_exit_1(case: str, tmp_path: Path, capsys) -> None:
    """In-process, each case; the real command's own stderr and exit status are checked just below."""
    text, expected = BAD_CONFIGS[case]
    path = tmp_path / "store.toml"
    path.write_text(text)
    assert main(["edge", "status", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err


def test_a_bad_config_makes_the_command_itself_exit_1_with_one_line(tmp_path: Path) -> None:
    text, expected = BAD_CONFIGS["bad port"]
    path = tmp_path / "store.toml"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "tenpo", "edge", "status", "--config", str(path)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_missing_config_names_the_env_variable(monkeypatch, capsys) -> None:
    monkeypatch.delenv("TENPO_CONFIG", raising=False)
    assert main(["edge", "status"]) == 1
    assert "TENPO_CONFIG" in capsys.readouterr().err


def test_config_from_environment(store, config_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TENPO_CONFIG", str(config_path))
    assert main(["edge", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["store_id"] == "S001"


# ---------------------------------------------------------------------------- replica


def test_init_creates_replica_and_key_pair_once(config_path: Path, capsys) -> None:
    assert main(["edge", "init", "--config", str(config_path)]) == 0
    public = Path(capsys.readouterr().out.strip())
    assert public == config_path.parent / "S001.pub" and public.read_text().startswith("-----BEGIN PUBLIC KEY")
    private = config_path.parent / "S001.key"
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    first = private.read_bytes()
    assert main(["edge", "init", "--config", str(config_path)]) == 0
    assert private.read_bytes() == first, "a second init never replaces the store's key"


def test_durability_settings_and_migrations(store) -> None:
    conn = store.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    applied = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert applied[0] == 1 and set(applied) <= {number for number, _, _ in edge_db.MIGRATIONS}
    assert edge_db.migrate(store) == edge_db.schema_version(store) == applied[-1], "migrating again changes nothing"


def test_outbox_numbers_are_gap_free_and_a_rolled_back_write_gives_its_number_back(store) -> None:
    with edge_db.transaction(store) as conn:
        append_event(conn, "stock.adjusted", {"sku": "A1", "delta": 1, "reason": "x"})
    with pytest.raises(RuntimeError):
        with edge_db.transaction(store) as conn:
            append_event(conn, "stock.adjusted", {"sku": "A1", "delta": 2, "reason": "x"})
            raise RuntimeError("power cut before commit")
    with edge_db.transaction(store) as conn:
        append_event(conn, "stock.adjusted", {"sku": "A1", "delta": 3, "reason": "x"})
    events = pending(store.conn, 0, 10)
    assert [e.seq for e in events] == [1, 2]
    assert [e.payload["delta"] for e in events] == [1, 3]
    assert events[0].hlc < events[1].hlc


def test_stock_adjustment_and_its_event_commit_together(store) -> None:
    seq = replica.adjust_stock(store, "A1", 5, "delivery count")
    assert store.conn.execute("SELECT delta, store_seq FROM stock_ledger").fetchall() == [(5, seq)]
    assert pending(store.conn, 0, 10)[0].payload == {"sku": "A1", "location": "floor", "delta": 5,
                                                    "reason": "delivery count", "ref": None}  # fmt: skip
    with pytest.raises(UserError, match="sku: NOPE is not in the product list"):
        replica.adjust_stock(store, "NOPE", 1, "x")
    assert read_counter(store.conn, "outbox") == 1, "a refused adjustment writes no event"


@pytest.mark.parametrize("query", ["090-1234-5678", "09012345678", "+81 90 1234 5678", "０９０１２３４５６７８",
                                   "hanako@example.jp", "HANAKO@EXAMPLE.JP", "C0001",
                                   "佐藤", "さとう", "サト", "ｻﾄｳ"])  # fmt: skip
def test_member_found_by_every_identifier(store, query: str) -> None:
    member_id = replica.register_member(store, "S001", name="佐藤 花子 様", kana="さとう はなこ",
                                        phone="090-1234-5678", email="hanako@EXAMPLE.jp", card_no="C0001")  # fmt: skip
    replica.register_member(store, "S001", name="鈴木 一郎", kana="スズキイチロウ", phone="080-9999-0000")
    found = replica.find_members(store, query)
    assert [m.member_id for m in found] == [member_id]
    assert found[0].name == "佐藤 花子" and found[0].kana == "サトウハナコ" and found[0].phone == "+819012345678"


def test_registration_reports_every_bad_field_and_writes_nothing(store) -> None:
    with pytest.raises(UserError) as caught:
        replica.register_member(store, "S001", name="佐藤", kana="sato", phone="12", email="not-an-email")
    message = str(caught.value)
    for field in ("kana", "phone", "email"):
        assert field in message
    assert store.conn.execute("SELECT count(*) FROM members").fetchone()[0] == 0
    assert read_counter(store.conn, "outbox") == 0


def test_card_number_cannot_belong_to_two_members(store) -> None:
    replica.register_member(store, "S001", name="A", card_no="C1")
    with pytest.raises(UserError, match="card: C1 already belongs"):
        replica.register_member(store, "S001", name="B", card_no="C1")


# ---------------------------------------------------------------------------- commands


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenpo", *args], input=stdin, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_edge_commands_end_to_end(store, config_path: Path) -> None:
    add_store_clerks(config_path.parent / "S001.db")
    cfg = ["--config", str(config_path)]
    added = run_cli("edge", "member", "add", "--name", "山田 太郎", "--kana", "ヤマダタロウ", "--phone", "09011112222", *cfg,
                    *AS_CLERK, stdin=PIN_LINE)  # fmt: skip
    assert added.returncode == 0, added.stderr
    member_id = added.stdout.strip()
    assert member_id.startswith("S001-")
    found = run_cli("edge", "member", "find", "090-1111-2222", "--json", *cfg, *AS_CLERK, stdin=PIN_LINE)
    assert [m["member_id"] for m in json.loads(found.stdout)] == [member_id]
    adjusted = run_cli("edge", "stock", "adjust", "--sku", "A1", "--qty", "7", "--reason", "count", *cfg, *AS_MANAGER,
                       stdin=PIN_LINE)  # fmt: skip
    assert adjusted.returncode == 0, adjusted.stderr
    stock = json.loads(run_cli("edge", "stock", "--sku", "A1", "--json", *cfg).stdout)
    assert stock == [{"store_id": "S001", "sku": "A1", "name": "お茶", "on_hand": 7, "as_of": None, "reserved": 0,
                      "available": 7}]  # nothing held for pickup: all of it can be sold
    status = json.loads(run_cli("edge", "status", "--json", *cfg).stdout)
    assert {k: status[k] for k in ("store_id", "connected", "last_seq", "last_acked_seq", "outbox_pending",
                                   "downstream_cursor")} == {  # fmt: skip
        # member.registered, member.viewed (the find is audited), stock.adjusted
        "store_id": "S001", "connected": False, "last_seq": 3, "last_acked_seq": 0, "outbox_pending": 3,
        "downstream_cursor": 0,
    }
    bad = run_cli("edge", "member", "add", "--name", "X", "--phone", "123", *cfg, *AS_CLERK, stdin=PIN_LINE)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "phone" in bad.stderr
    usage = run_cli("edge", "member", "add", *cfg)
    assert usage.returncode == 2, "bad usage exits 2"
