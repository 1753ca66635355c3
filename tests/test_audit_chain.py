"""Issue 14: the audit logs at the store and at HQ are hash chains an operator can check.

Tampering is done the way an attacker with the database would: raw SQL, after dropping the
append-only triggers. `tenpo cloud audit verify` / `tenpo edge audit verify` must then exit 1 and
name the first row that does not hold. The JSON verdicts are read from the command run in-process
(``main``); each dialect's text form still runs as a real command, so its exit status is the one a
shell sees.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.cloud import db as cloud_db
from tenpo.cloud.admin import add_store
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.changes import audit
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge.clerk import records
from tenpo.edge.membership.feed import CHANGE_HANDLERS
from tenpo.shared import crypto
from tenpo.shared.audit_chain import row_hash
from tenpo.shared.protocol import Event, EventBatch

AUDIT_COLUMNS = "id, actor, action, subject, detail, at"


def tenpo(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenpo", *args], capture_output=True, text=True, input=stdin,
                          timeout=120)  # fmt: skip


def drop_cloud_triggers(db: Central) -> None:
    if db.dialect == "postgresql":
        db.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    else:
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("DROP TRIGGER audit_log_no_delete")


def five_rows(db: Central) -> list[int]:
    for n in range(5):
        with db.transaction():
            audit(db, "operator", "member.view", f"G{n:05d}", {"n": n})
    return [int(r[0]) for r in db.all("SELECT id FROM audit_log ORDER BY chain_seq")]


def run_json(*args: str) -> tuple[int, dict]:
    """``tenpo ARGS --json`` in this process: its exit code and its JSON verdict."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue())


def verify_cli(url: str) -> tuple[int, dict]:
    return run_json("cloud", "audit", "verify", "--db", url)


# ---------------------------------------------------------------------------- HQ


def test_hq_chain_holds_and_refuses_update_and_delete(central_url: str) -> None:
    db = Central(central_url)
    ids = five_rows(db)
    code, verdict = verify_cli(central_url)
    assert code == 0 and verdict["ok"] and verdict["rows"] == 5 and verdict["head_seq"] == 5
    for statement in ("UPDATE audit_log SET detail = '{}' WHERE id = ?", "DELETE FROM audit_log WHERE id = ?"):
        with pytest.raises(Exception, match="append-only"):
            with db.transaction():
                db.execute(statement, (ids[1],))
    if db.dialect == "postgresql":
        with pytest.raises(Exception, match="append-only"):
            db.execute("TRUNCATE audit_log")
    assert db.scalar("SELECT count(*) FROM audit_log") == 5
    db.close()


def test_hq_verify_names_a_changed_row(central_url: str) -> None:
    db = Central(central_url)
    ids = five_rows(db)
    drop_cloud_triggers(db)
    db.execute("UPDATE audit_log SET subject = 'G99999' WHERE id = ?", (ids[2],))
    code, verdict = verify_cli(central_url)
    assert code == 1 and verdict["broken_row"] == ids[2] and "changed" in verdict["problem"]
    text = tenpo("cloud", "audit", "verify", "--db", central_url)
    assert text.returncode == 1 and f"row id {ids[2]}" in text.stderr
    db.close()


def test_hq_verify_names_the_row_after_a_removed_one(central_url: str) -> None:
    db = Central(central_url)
    ids = five_rows(db)
    drop_cloud_triggers(db)
    db.execute("DELETE FROM audit_log WHERE id = ?", (ids[1],))
    code, verdict = verify_cli(central_url)
    assert code == 1 and verdict["broken_row"] == ids[2] and "removed" in verdict["problem"]
    db.close()


def test_hq_verify_finds_a_forged_row_inserted_with_a_correct_link(central_url: str) -> None:
    """The forger links the new row to row 1 and renumbers the rest: the old row 2 no longer links."""
    db = Central(central_url)
    ids = five_rows(db)
    drop_cloud_triggers(db)
    first = db.one("SELECT row_hash FROM audit_log WHERE chain_seq = 1")
    db.execute("UPDATE audit_log SET chain_seq = -chain_seq WHERE chain_seq >= 2")
    db.execute("UPDATE audit_log SET chain_seq = -chain_seq + 1 WHERE chain_seq < 0")
    forged_id, at = 10_000, time.time()
    fields = (forged_id, "op:mallory", "member.view", "G00001", "{}", at)
    db.execute(f"INSERT INTO audit_log({AUDIT_COLUMNS}, chain_seq, prev_hash, row_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (*fields, 2, first[0], row_hash(2, fields, first[0])))  # fmt: skip
    code, verdict = verify_cli(central_url)
    assert code == 1 and verdict["broken_row"] == ids[1], verdict
    db.close()


def test_hq_verify_finds_a_row_inserted_around_the_audit_function(central_url: str) -> None:
    db = Central(central_url)
    five_rows(db)
    db.execute("INSERT INTO audit_log(actor, action, subject, detail, at) VALUES ('x', 'member.view', 'G1', '{}', ?)",
               (time.time(),))  # fmt: skip
    forged = int(db.scalar("SELECT max(id) FROM audit_log"))
    code, verdict = verify_cli(central_url)
    assert code == 1 and verdict["broken_row"] == forged and "not in the chain" in verdict["problem"]
    db.close()


def test_hq_verify_finds_rows_cut_off_the_end(central_url: str) -> None:
    db = Central(central_url)
    ids = five_rows(db)
    drop_cloud_triggers(db)
    db.execute("DELETE FROM audit_log WHERE id = ?", (ids[-1],))
    code, verdict = verify_cli(central_url)
    assert code == 1 and verdict["head_seq"] == 4 and "cut off" in verdict["problem"]
    db.close()


def test_rows_written_before_the_migration_are_chained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = [m for m in cloud_db.MIGRATIONS if m[0] < 11]
    monkeypatch.setattr(cloud_db, "MIGRATIONS", old)
    db = Central(url)
    for n in range(3):
        db.execute("INSERT INTO audit_log(actor, action, subject, detail, at) VALUES (?, ?, ?, ?, ?)",
                   ("operator", "member.view", f"G{n}", "{}", 1_700_000_000.5 + n))  # fmt: skip
    db.close()
    monkeypatch.undo()
    db = Central(url)  # migration 11 now
    assert [r[0] for r in db.all("SELECT chain_seq FROM audit_log ORDER BY id")] == [1, 2, 3]
    code, verdict = verify_cli(url)
    assert code == 0 and verdict["rows"] == 3
    db.close()


def test_concurrent_writers_never_fork_the_chain(central_url: str) -> None:
    """Four connections (as four aggregators or commands) append at once: one chain, no gap, no repeat."""
    Central(central_url).close()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        db = Central(central_url)
        try:
            for i in range(15):
                with db.transaction():
                    audit(db, "aggregator", "member.view", f"G{n}-{i}", {})
                    db.execute("SELECT 1")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    code, verdict = verify_cli(central_url)
    assert code == 0 and verdict["rows"] == 60 and verdict["head_seq"] == 60


def test_store_views_synced_to_hq_answer_who_looked(tmp_path: Path, central_url: str) -> None:
    crypto.generate_keypair(tmp_path / "S001.key", tmp_path / "S001.pub")
    db = Central(central_url)
    add_store(db, "S001", crypto.public_key_pem(crypto.load_private_key(tmp_path / "S001.key")), "Shibuya")
    viewed = [Event(1, uuid.uuid4().hex, "member.viewed", 1, 1 << 16,
                    {"clerk_id": "1001", "member_id": "S001-000007", "action": "view", "at": 1_760_000_000.25}),
              Event(2, uuid.uuid4().hex, "member.viewed", 1, 2 << 16,
                    {"clerk_id": "1002", "member_id": "S001-000008", "action": "export", "at": 1_760_000_100.0})]  # fmt: skip
    assert apply_batch(db, "S001", EventBatch("stream-1", viewed)).hwm == 2
    with db.transaction():
        audit(db, "operator", "member.view", "S001-000007", {})
    db.close()
    listing = tenpo("cloud", "audit", "list", "--member", "S001-000007", "--json", "--db", central_url)
    assert listing.returncode == 0, listing.stderr
    entries = json.loads(listing.stdout)["entries"]
    assert [(e["where"], e["clerk"], e["action"]) for e in entries] == [
        ("HQ", None, "member.view"),
        ("S001", "1001", "member.view"),
    ]
    code, verdict = verify_cli(central_url)
    assert code == 0 and verdict["rows"] >= 3  # the store's rows are in HQ's chain too


# ---------------------------------------------------------------------------- store


def store_db(tmp_path: Path) -> tuple[Path, Path]:
    path = tmp_path / "S001.db"
    config = tmp_path / "S001.toml"
    config.write_text(f'[store]\nid = "S001"\nname = "x"\ndatabase = "{path}"\n[broker]\nurl = "mqtt://127.0.0.1:1"\n')
    edge_db.connect(path).conn.close()
    return path, config


def edge_verify(config: Path) -> tuple[int, dict]:
    return run_json("edge", "audit", "verify", "--config", str(config))


def test_store_chain_detects_change_removal_and_insertion(tmp_path: Path) -> None:
    path, config = store_db(tmp_path)
    db = edge_db.connect(path)
    for n in range(4):
        records.record_member_access(db, "1001", f"S001-00000{n}", "view", now=1_760_000_000.0 + n)
    code, verdict = edge_verify(config)
    assert code == 0 and verdict["rows"] == 4
    with pytest.raises(Exception, match="append-only"):
        with edge_db.transaction(db) as conn:
            conn.execute("DELETE FROM member_audit WHERE id = 2")
    conn = db.conn
    conn.execute("DROP TRIGGER member_audit_no_update")
    conn.execute("DROP TRIGGER member_audit_no_delete")

    conn.execute("UPDATE member_audit SET clerk_id = '9999' WHERE id = 3")
    code, verdict = edge_verify(config)
    assert code == 1 and verdict["broken_row"] == 3 and "changed" in verdict["problem"]
    text = tenpo("edge", "audit", "verify", "--config", str(config))
    assert text.returncode == 1 and "row id 3" in text.stderr

    conn.execute("UPDATE member_audit SET clerk_id = '1001' WHERE id = 3")  # put back: holds again
    assert edge_verify(config)[0] == 0
    conn.execute("DELETE FROM member_audit WHERE id = 2")
    code, verdict = edge_verify(config)
    assert code == 1 and verdict["broken_row"] == 3 and "removed" in verdict["problem"]

    conn.execute(
        "INSERT INTO member_audit(id, clerk_id, member_id, action, at, event_seq, chain_seq, prev_hash, row_hash)"
        " SELECT 2, clerk_id, member_id, action, at, event_seq, 2, prev_hash, row_hash FROM member_audit"
        " WHERE id = 3"
    )  # a copy of row 3 in the gap: the row after it no longer links
    conn.execute("UPDATE member_audit SET member_id = 'S001-000001' WHERE id = 2")
    code, verdict = edge_verify(config)
    assert code == 1 and verdict["broken_row"] == 2
    db.conn.close()


def test_store_chain_survives_a_member_merge_and_lists_the_merged_id(tmp_path: Path) -> None:
    path, config = store_db(tmp_path)
    db = edge_db.connect(path)
    records.record_member_access(db, "1001", "S001-000001", "view", now=1_760_000_000.0)
    with edge_db.transaction(db) as conn:
        CHANGE_HANDLERS["member.merge"](
            conn, "S001", [{"winner": "G00001", "losers": ["S001-000001"], "merge_id": 1}], 7
        )
    records.record_member_access(db, "1002", "G00001", "export", now=1_760_000_001.0)
    seen = records.member_audit(db, "G00001")
    assert [(r["clerk_id"], r["member_id"]) for r in seen] == [("1002", "G00001"), ("1001", "S001-000001")]
    assert edge_verify(config)[0] == 0
    db.conn.close()
