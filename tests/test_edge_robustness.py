"""The store side when things go wrong: a missing, foreign, damaged, full or too-new database, a job
racing the loop on the shared connection, a failed COMMIT, bad flags and files, a closed pipe.
Each says what happened in one line (exit 1; 2 for usage) and leaves the replica usable."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.triggers.interval import IntervalTrigger

from tenpo.cli import main
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.agent import check_store
from tenpo.edge.config import load_config
from tenpo.edge.scheduler import Job, StoreJobs, StoreScheduler
from tenpo.sandbox import tenpo_command, write_store_config
from tenpo.shared.errors import ConfigError
from tenpo.shared.mqtt import TlsFiles, tls_context
from tests.support.clerks import AS_CLERK, AS_MANAGER, PIN_LINE, add_store_clerks, pins_on_stdin


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_store_config(tmp_path, "S001", "mqtt://127.0.0.1:1")


@pytest.fixture
def database(config_path: Path) -> Path:
    """An initialised replica, closed, so a test can do what it likes to the file."""
    assert main(["edge", "init", "--config", str(config_path)]) == 0
    return load_config(str(config_path)).database


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(tenpo_command(*args), input=stdin, capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=120)  # fmt: skip


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# ---------------------------------------------------------------------------- missing database

READ_COMMANDS = {
    "status": ["edge", "status"],
    "status --json": ["edge", "status", "--json"],
    "member find": ["edge", "member", "find", "yamada", "--json", *AS_CLERK],
    "stock": ["edge", "stock"],
    "check": ["edge", "check"],
    "clerk list": ["edge", "clerk", "list", *AS_MANAGER],
    "inspections": ["edge", "inspect", "list"],
    "member add": ["edge", "member", "add", "--name", "山田", *AS_CLERK],
    "clerk terminal": ["clerk"],
}


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_a_mistyped_database_path_is_reported_and_not_created(command: str, config_path: Path, capsys) -> None:
    database = load_config(str(config_path)).database
    assert main([*READ_COMMANDS[command], "--config", str(config_path)]) == 1
    message = one_line_error(capsys.readouterr().err)
    assert str(database) in message and "does not exist" in message
    assert not database.exists() and not database.parent.joinpath(database.name + "-wal").exists()


def test_init_still_creates_the_replica(config_path: Path) -> None:
    assert main(["edge", "init", "--config", str(config_path)]) == 0
    assert main(["edge", "status", "--config", str(config_path)]) == 0


# ---------------------------------------------------------------------------- foreign and newer files


def test_a_file_that_is_not_sqlite_gives_one_line(config_path: Path) -> None:
    database = load_config(str(config_path)).database
    database.write_text("store,name\nS001,Shibuya\n" * 200)
    result = run("edge", "status", "--config", str(config_path))
    assert result.returncode == 1
    assert "is not a SQLite database" in one_line_error(result.stderr)
    assert database.read_text().startswith("store,name")  # left as it was


def test_a_replica_from_a_newer_tenpo_is_refused_naming_both_versions(database: Path, config_path: Path, capsys) -> None:
    newest = edge_db.MIGRATIONS[-1][0]
    conn = sqlite3.connect(database)
    conn.execute("INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, 'from the future', 0)", (newest + 5,))
    conn.commit()
    conn.close()
    for command in (["edge", "status"], ["edge", "member", "add", "--name", "山田", *AS_CLERK]):
        assert main([*command, "--config", str(config_path)]) == 1
        message = one_line_error(capsys.readouterr().err)
        assert f"schema version {newest + 5}" in message and f"({newest})" in message
    with pytest.raises(edge_db.StoreDatabaseError, match=f"schema version {newest + 5}"):
        check_store(load_config(str(config_path)))  # the agent refuses too, before it touches the broker
    conn = sqlite3.connect(database)
    assert conn.execute("SELECT count(*) FROM members").fetchone()[0] == 0
    conn.close()


# ---------------------------------------------------------------------------- damaged pages


def damage(database: Path, table: str) -> None:
    """Overwrite the table's root page in the file, as a failing SD card would."""
    conn = sqlite3.connect(database)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    assert not Path(f"{database}-wal").exists() or Path(f"{database}-wal").stat().st_size == 0
    with open(database, "r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xff" * page_size)


@pytest.fixture
def damaged(database: Path) -> Path:
    db = edge_db.connect(database)
    for n in range(300):
        replica.register_member(db, "S001", name=f"ヤマダ {n}", kana="ヤマダ", phone=f"0901111{n:04d}")
    db.conn.close()  # the last connection checkpoints the WAL into the file
    add_store_clerks(database)
    damage(database, "members")
    return database


def test_damaged_pages_give_one_line_and_check_lists_them(damaged: Path, config_path: Path) -> None:
    cfg = ["--config", str(config_path)]
    found = run("edge", "member", "find", "ヤマダ", *cfg, *AS_CLERK, stdin=PIN_LINE)
    assert found.returncode == 1
    assert "is damaged" in one_line_error(found.stderr) and "tenpo edge check" in found.stderr

    checked = run("edge", "check", *cfg)
    assert checked.returncode == 1
    assert checked.stdout.strip(), "the problems quick_check found are listed"
    assert "is damaged" in one_line_error(checked.stderr)

    status = run("edge", "status", "--json", *cfg)  # the rest of the file still reads: the last check shows
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["integrity"]["ok"] is False
    assert run("edge", "status", "--check", *cfg).returncode == 1


def test_the_agent_refuses_a_damaged_replica_in_one_line(damaged: Path, config_path: Path) -> None:
    result = run("edge", "run", "--config", str(config_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("tenpo: store database") and "Traceback" not in result.stderr
    assert "is damaged" in result.stderr


def test_a_sound_replica_checks_ok_and_status_shows_it(database: Path, config_path: Path, capsys) -> None:
    assert main(["edge", "status", "--check", "--json", "--config", str(config_path)]) == 0
    integrity = json.loads(capsys.readouterr().out)["integrity"]
    assert integrity["ok"] is True and integrity["problems"] == []
    assert main(["edge", "check", "--config", str(config_path)]) == 0
    assert capsys.readouterr().out.startswith("ok")


# ---------------------------------------------------------------------------- disk full


def test_a_checkout_on_a_full_disk_says_so_and_writes_nothing(database: Path, config_path: Path, monkeypatch,
                                                            capsys) -> None:  # fmt: skip
    add_store_clerks(database)
    pins_on_stdin(monkeypatch)
    db = edge_db.connect(database)
    with edge_db.transaction(db) as conn:
        conn.executemany("INSERT INTO products(sku, name, price, tax_class, version) VALUES (?, ?, 100, 'standard', 1)",
                         [(f"P{n:03d}", f"品物 {n} " * 8) for n in range(300)])  # fmt: skip
    db.conn.close()
    scans = [arg for n in range(300) for arg in ("--scan", f"sku:P{n:03d}")]
    sell = ["edge", "checkout", "--config", str(config_path), *scans, "--pay", "cash:100000", *AS_CLERK]

    with monkeypatch.context() as patch:
        real_connect = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = real_connect(*args, **kwargs)
            conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
            return conn

        patch.setattr(sqlite3, "connect", connect)
        assert main(sell) == 1
    message = one_line_error(capsys.readouterr().err)
    assert str(database) in message and "disk is full" in message and "nothing was saved" in message

    db = edge_db.connect(database)
    assert db.conn.execute("SELECT count(*) FROM sales").fetchone()[0] == 0
    assert db.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    db.conn.close()
    assert main(sell) == 0  # space freed: the same sale goes through


def test_a_full_disk_inside_a_transaction_leaves_the_connection_usable(database: Path) -> None:
    db = edge_db.connect(database)
    conn = db.conn
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(edge_db.StoreDatabaseError, match="disk is full"):
        with edge_db.transaction(db) as tx:
            tx.execute("INSERT INTO dead_letters(source, reason, payload, created_at) VALUES ('t', 'x', ?, 0)",
                       (b"\0" * 200_000,))  # fmt: skip
    assert not conn.in_transaction
    conn.execute("PRAGMA max_page_count = 1000000")
    with edge_db.transaction(db) as tx:
        tx.execute("INSERT INTO dead_letters(source, reason, payload, created_at) VALUES ('t', 'x', ?, 0)", (b"\0" * 200_000,))
    assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 1
    conn.close()


# ---------------------------------------------------------------------------- the shared connection


def test_a_failed_commit_rolls_back(database: Path) -> None:
    """COMMIT itself can fail (here a deferred foreign key; also SQLITE_BUSY or a full disk)."""
    db = edge_db.connect(database)
    with pytest.raises(sqlite3.IntegrityError):
        with edge_db.transaction(db) as conn:
            conn.execute("PRAGMA defer_foreign_keys = ON")
            conn.execute("INSERT INTO points_ledger(member_id, delta, kind, created_at) VALUES ('nobody', 5, 'accrual', 0)")
    assert not db.conn.in_transaction
    with edge_db.transaction(db) as conn:  # not "cannot start a transaction within a transaction"
        conn.execute("INSERT INTO dead_letters(source, reason, created_at) VALUES ('t', 'after', 0)")
    assert db.conn.execute("SELECT count(*) FROM points_ledger").fetchone()[0] == 0
    db.conn.close()


def test_scheduled_jobs_every_millisecond_never_wedge_the_loop_connection(config_path: Path, database: Path) -> None:
    """The agent's real scheduler and jobs (retention, checkpoint), due every millisecond, against loop writes."""
    db = edge_db.connect(database)
    store_jobs = StoreJobs(load_config(str(config_path)), db)
    every_ms = IntervalTrigger(seconds=0.001, timezone=UTC)
    scheduler = StoreScheduler(db, [Job("retention", every_ms, store_jobs.retention),
                                    Job("checkpoint", every_ms, store_jobs.checkpoint)], UTC)  # fmt: skip
    job_runs: list[JobExecutionEvent] = []
    write_errors: list[BaseException] = []

    async def stress() -> None:
        aps = await scheduler.start()
        aps.add_listener(job_runs.append, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        writes = 0
        try:
            while len(job_runs) < 150 and writes < 50_000:
                try:
                    with edge_db.transaction(db) as conn:  # old enough for retention to delete
                        conn.execute("INSERT INTO dead_letters(source, reason, created_at) VALUES ('stress', 'x', 0)")
                        conn.execute("UPDATE dead_letters SET reason = 'y' WHERE source = 'stress'")
                except sqlite3.Error as exc:
                    write_errors.append(exc)
                writes += 1
                await asyncio.sleep(0)
        finally:
            scheduler.shutdown()

    asyncio.run(stress())
    assert len(job_runs) >= 150
    assert [event.exception for event in job_runs if event.exception] == []
    assert all(event.retval is True for event in job_runs), "run_job reports a failed job as False"
    assert write_errors == []
    assert not db.conn.in_transaction
    with edge_db.transaction(db) as conn:
        conn.execute("INSERT INTO dead_letters(source, reason, created_at) VALUES ('t', 'still writable', 0)")
    db.conn.close()


# ---------------------------------------------------------------------------- flags, files, pipes


def test_a_bad_log_level_is_a_usage_error(config_path: Path, capsys, monkeypatch) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["edge", "run", "--log-level", "LOUD", "--config", str(config_path)])
    assert exited.value.code == 2
    assert "'LOUD' is not a log level" in capsys.readouterr().err
    monkeypatch.setenv("TENPO_LOG_LEVEL", "chatty")
    with pytest.raises(SystemExit) as exited:
        main(["cloud", "run", "--db", "sqlite:///unused.db"])
    assert exited.value.code == 2
    assert "'chatty' is not a log level" in capsys.readouterr().err


def test_tls_files_missing_or_unusable_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"CA certificate {tmp_path / 'nope.pem'}: file not found"):
        tls_context(TlsFiles(ca=tmp_path / "nope.pem"))
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=f"CA certificate {garbage}: cannot use it"):
        tls_context(TlsFiles(ca=garbage))
    with pytest.raises(ConfigError, match=f"client key {tmp_path / 'store.key'}: file not found"):
        tls_context(TlsFiles(cert=garbage, key=tmp_path / "store.key"))


def test_the_agent_names_a_missing_tls_file_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "pki" / "ca.pem"
    config = write_store_config(tmp_path, "S001", "mqtts://127.0.0.1:1", {"ca": str(missing)})
    result = run("edge", "run", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"tenpo: TLS CA certificate {missing}: file not found"
    assert "Traceback" not in result.stderr


def test_output_into_a_closed_pipe_ends_quietly(database: Path, config_path: Path) -> None:
    """`tenpo ... --json | head`: when the reader has gone, no traceback, the SIGPIPE status."""
    for command in (["epc", "decode", "--json", *["3074257BF7194E4000001A85"] * 50],
                    ["edge", "status", "--json", "--config", str(config_path)]):  # fmt: skip
        read_end, write_end = os.pipe()
        os.close(read_end)
        result = subprocess.run(tenpo_command(*command), stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
        os.close(write_end)
        assert (result.returncode, result.stderr) == (141, "")


def test_epc_decode_of_something_that_is_not_hex_exits_1(capsys) -> None:
    assert main(["epc", "decode", "3074257BF7194E4000001A85", "ZZZZ"]) == 1
    captured = capsys.readouterr()
    assert "sgtin-96" in captured.out
    assert "'ZZZZ'" in one_line_error(captured.err)


def test_python_m_tenpo_ignores_a_partial_checkout_in_the_working_directory(tmp_path: Path) -> None:
    """A source checkout's `tenpo/` folder has no edge, cloud or shared: spawning must not import it."""
    shadow = tmp_path / "tenpo"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("")
    (shadow / "__main__.py").write_text("raise SystemExit('imported the checkout folder')\n")
    result = run("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("tenpo "), result.stderr


# ---------------------------------------------------------------------------- member find --limit


def test_member_find_says_how_many_more_matched(database: Path, config_path: Path, capsys, monkeypatch) -> None:
    add_store_clerks(database)
    pins_on_stdin(monkeypatch)
    db = edge_db.connect(database)
    for n in range(25):
        replica.register_member(db, "S001", name=f"山田 {n}", kana="ヤマダ")
    db.conn.close()
    cfg = ["--config", str(config_path), *AS_CLERK]

    assert main(["edge", "member", "find", "ヤマダ", "--json", *cfg]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 20
    assert one_line_error(captured.err).startswith("5 more match")

    assert main(["edge", "member", "find", "ヤマダ", "--limit", "30", "--json", *cfg]) == 0
    captured = capsys.readouterr()
    assert (len(json.loads(captured.out)), captured.err) == (25, "")

    assert main(["edge", "member", "find", "ヤマダ", "--limit", "10", *cfg]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 11 and "15 more match" in lines[-1]

    with pytest.raises(SystemExit) as exited:
        main(["edge", "member", "find", "ヤマダ", "--limit", "0", *cfg])
    assert exited.value.code == 2
