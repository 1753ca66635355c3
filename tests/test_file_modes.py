"""Personal data and keys are the owner's alone: real commands, started with a lax umask (022), leave
the replica, its WAL and SHM, the keys, central.db and exports 0600 in 0700 folders."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import time
from pathlib import Path

from tenpo.sandbox import tenpo_command
from tests.support.broker import Mosquitto
from tests.support.operators import make_operator, stdin_for

LAX = 0o022  # what a shell usually has: files 0644, folders 0755


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tenpo(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(tenpo_command(*args), input=stdin, capture_output=True, text=True, umask=LAX, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_store_replica_wal_shm_and_keys_are_private(tmp_path: Path) -> None:
    data = tmp_path / "srv" / "tenpo"
    config = tmp_path / "S001.toml"
    config.write_text(f'[store]\nid = "S001"\nname = "渋谷店"\ndatabase = "{data / "S001.db"}"\n'
                      '[broker]\nurl = "mqtt://127.0.0.1:1"\n', encoding="utf-8")  # fmt: skip
    tenpo("edge", "init", "--config", str(config))
    db = data / "S001.db"
    reader = sqlite3.connect(db)  # held open so the WAL and SHM outlive the command
    try:
        with reader:
            reader.execute("INSERT INTO products(sku, jan, name, price, tax_class, version)"
                           " VALUES ('A1', '4901234567894', 'お茶', 150, 'reduced', 1)")  # fmt: skip
        # The store's first manager (bootstrap), who then sells: the PIN on the first line of stdin.
        tenpo("edge", "clerk", "add", "9001", "--name", "店長", "--role", "manager", "--config", str(config), stdin="482913\n")
        tenpo("edge", "checkout", "--config", str(config), "--scan", "sku:A1", "--pay", "cash:200", "--clerk", "9001",
              stdin="482913\n")  # fmt: skip
        assert reader.execute("SELECT count(*) FROM sales").fetchone() == (1,)
        files = [db, db.with_name("S001.db-wal"), db.with_name("S001.db-shm"), db.with_suffix(".key"),
                 db.with_suffix(".pub")]  # fmt: skip
        assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}
        assert oct(mode(data)) == "0o700"
    finally:
        reader.close()


def test_central_db_and_an_export_are_private(tmp_path: Path, broker: Mosquitto) -> None:
    central = tmp_path / "hq" / "central.db"
    log = tmp_path / "aggregator.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(tenpo_command("cloud", "run", "--db", f"sqlite:///{central}", "--broker", broker.url),
                                   stdout=subprocess.DEVNULL, stderr=stderr, umask=LAX)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while "aggregator connected" not in log.read_text():  # the log line is the event
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            assert oct(mode(central)) == "0o600"
            assert oct(mode(central.parent)) == "0o700"
            for suffix in ("-wal", "-shm"):
                wal = central.with_name(central.name + suffix)
                assert not wal.exists() or oct(mode(wal)) == "0o600", suffix
        finally:
            process.terminate()
            process.wait(timeout=30)
    export = tmp_path / "members.jsonl"
    secret = make_operator(f"sqlite:///{central}")  # exports are an admin's (issue 14): password, then TOTP code
    tenpo("cloud", "members", "export", "--db", f"sqlite:///{central}", "--output", str(export), "--operator", "root",
          stdin=stdin_for(secret))  # fmt: skip
    assert oct(mode(export)) == "0o600"
