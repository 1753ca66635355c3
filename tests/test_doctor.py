"""`tenpo doctor`: a healthy store passes; a missing reader, a stopped broker, a damaged database fail it."""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import time
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.cloud.db import Central
from tenpo.doctor import GREEN, RED, YELLOW, backup_check, clock_check
from tenpo.edge import clock_skew, replica
from tenpo.edge import db as edge_db
from tenpo.edge.clock_skew import CLOCK_SKEW_META, RecordedSkew
from tenpo.edge.db import transaction
from tenpo.edge.outbox import set_meta
from tenpo.edge.rfid import mercury, r2000
from tenpo.edge.rfid.simulator import ReaderSimulator
from tenpo.sandbox import Mosquitto, provision_store


@pytest.fixture
def store(tmp_path: Path, broker: Mosquitto, sqlite_url: str) -> Path:
    return provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url)


def doctor(capsys, *args: str) -> tuple[int, dict[str, dict]]:
    status = main(["doctor", *args, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"ok", "checks"} and report["ok"] is (status == 0)
    for check in report["checks"]:
        assert set(check) == {"name", "status", "detail"} and check["status"] in (GREEN, YELLOW, RED)
    return status, {c["name"]: c for c in report["checks"]}


def with_reader(config: Path, port: str, protocol: str = "ascii") -> None:
    profile = config.parent / "door.toml"
    profile.write_text(f'[reader]\nname = "door"\nprotocol = "{protocol}"\nport = "{port}"\n')
    config.write_text(config.read_text() + f'[dock]\nreaders = ["{profile}"]\n')


def test_a_healthy_store_is_green_or_yellow_and_exits_0(store: Path, capsys) -> None:
    leader, follower = pty.openpty()  # a reader that is plugged in
    try:
        with_reader(store, os.ttyname(follower))
        status, checks = doctor(capsys, "--config", str(store))
    finally:
        os.close(leader)
        os.close(follower)
    assert status == 0, checks
    assert {"config", "disk space", "database", "backlog", "last backup", "agent", "broker", "clock",
            "TLS client certificate", "reader door", "bluetooth"} <= set(checks)  # fmt: skip
    assert checks["broker"]["status"] == GREEN
    assert checks["reader door"]["status"] == GREEN
    assert checks["last backup"]["detail"].startswith("none yet"), "the first nightly backup is not due"
    assert checks["TLS client certificate"]["detail"] == "not configured"
    assert checks["bluetooth"]["detail"] == "beacons not configured"
    main(["doctor", "--config", str(store)])
    table = capsys.readouterr().out
    assert "broker" in table and "green" in table


def test_a_missing_reader_port_is_red(store: Path, capsys) -> None:
    with_reader(store, "/dev/tenpo-rfid-unplugged")
    status, checks = doctor(capsys, "--config", str(store))
    assert status == 1
    assert checks["reader door"]["status"] == RED and "not present" in checks["reader door"]["detail"]


@pytest.mark.parametrize("protocol", ["mercury", "r2000"])
def test_a_reader_is_asked_through_its_driver_and_green_when_it_answers(protocol: str, store: Path, capsys) -> None:
    with ReaderSimulator(protocol, rate=10) as sim:
        with_reader(store, sim.path, protocol)
        status, checks = doctor(capsys, "--config", str(store))
        asked = [code for code, _data in sim.counters.commands]
    assert checks["reader door"]["status"] == GREEN and checks["reader door"]["detail"].endswith("answers")
    version = mercury.OP_VERSION if protocol == "mercury" else r2000.CMD_GET_FIRMWARE_VERSION
    assert asked == [version], "only the version was asked: nothing was configured"


def test_a_port_that_opens_but_where_no_module_answers_is_red(store: Path, capsys) -> None:
    leader, follower = pty.openpty()  # a port, but a module that is off (or speaks another protocol)
    try:
        with_reader(store, os.ttyname(follower), "mercury")
        status, checks = doctor(capsys, "--config", str(store))
    finally:
        os.close(leader)
        os.close(follower)
    assert status == 1
    assert checks["reader door"]["status"] == RED and "present but not answering" in checks["reader door"]["detail"]


def test_a_stopped_broker_is_red(store: Path, broker: Mosquitto, capsys) -> None:
    broker.stop()
    status, checks = doctor(capsys, "--config", str(store))
    assert status == 1
    assert checks["broker"]["status"] == RED and "cannot connect" in checks["broker"]["detail"]


def test_a_damaged_database_is_red(store: Path, capsys) -> None:
    database = store.parent / "S001.db"
    db = edge_db.connect(database)
    for n in range(300):
        replica.register_member(db, "S001", name=f"ヤマダ {n}", phone=f"0901111{n:04d}")
    db.conn.close()
    conn = sqlite3.connect(database)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'members'").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(database, "r+b") as file:  # what a failing SD card does to a page
        file.seek((root - 1) * page_size)
        file.write(b"\xff" * page_size)
    status, checks = doctor(capsys, "--config", str(store))
    assert status == 1
    assert checks["database"]["status"] == RED and "damaged" in checks["database"]["detail"]


def test_a_bad_config_is_red_and_reported_alone(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[store]\nid = 'S 1'\n")
    status, checks = doctor(capsys, "--config", str(bad))
    assert status == 1 and list(checks) == ["config"]


def test_hq_mode_checks_the_central_database_and_the_broker(broker: Mosquitto, sqlite_url: str, capsys) -> None:
    Central(sqlite_url).close()
    status, checks = doctor(capsys, "--db", sqlite_url, "--broker", broker.url)
    assert status == 0 and checks["central database"]["status"] == GREEN and checks["broker"]["status"] == GREEN
    broker.stop()
    status, checks = doctor(capsys, "--db", sqlite_url, "--broker", broker.url)
    assert status == 1 and checks["broker"]["status"] == RED


def test_verdicts_for_backups_and_the_clock() -> None:
    now = 1_800_000_000.0
    assert backup_check(None, {"since": now - 3600}, now).status == GREEN
    assert backup_check(None, {"since": now - 3 * 86400}, now).status == RED
    assert backup_check({"at": now - 3600, "path": "b"}, None, now).status == GREEN
    assert backup_check({"at": now - 3 * 86400, "path": "b"}, None, now).status == RED
    assert clock_check(RecordedSkew(0.3, now - 10, 8), now, True).status == GREEN
    assert clock_check(RecordedSkew(-5.0, now - 10, 8), now, True).status == YELLOW, "5 s behind HQ"
    assert clock_check(RecordedSkew(45.0, now - 10, 8), now, True).status == RED, "45 s behind HQ"
    unknown = clock_check(None, now, False)
    assert unknown.status == YELLOW and "unknown" in unknown.detail, "no ack yet is not an alarm"


def test_a_large_clock_skew_recorded_by_the_sync_link_is_red(store: Path, capsys) -> None:
    status, checks = doctor(capsys, "--config", str(store))
    assert checks["clock"]["status"] == YELLOW and "no ack from HQ yet" in checks["clock"]["detail"]
    db = edge_db.connect(store.parent / "S001.db")
    with transaction(db) as conn:  # what the agent records when HQ's acks say our clock is 75 s fast
        set_meta(conn, CLOCK_SKEW_META, clock_skew.to_meta(-75.0, 8, time.time()))
    db.conn.close()
    status, checks = doctor(capsys, "--config", str(store))
    assert status == 1
    assert checks["clock"]["status"] == RED and "75.0s behind ours" in checks["clock"]["detail"]


def test_a_tls_broker_is_verified_and_a_foreign_ca_is_red(tmp_path: Path, sqlite_url: str, capsys) -> None:
    acl = Path(__file__).resolve().parent.parent / "firmware-config" / "broker" / "acl"
    chain, other = tmp_path / "pki", tmp_path / "other-pki"
    for directory in (chain, other):
        assert main(["provision", "ca", "--dir", str(directory)]) == 0
        assert main(["provision", "store", "S001", "--dir", str(directory)]) == 0
    assert main(["provision", "broker", "--dir", str(chain), "--host", "127.0.0.1", "--host", "localhost"]) == 0
    (chain / "acl").write_text(acl.read_text())
    capsys.readouterr()
    broker = Mosquitto(tmp_path, tls_dir=chain).start()
    try:
        files = {"ca": str(chain / "ca.pem"), "cert": str(chain / "S001.crt"), "key": str(chain / "S001.client.key")}
        store = provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url, broker_extra=files)
        status, checks = doctor(capsys, "--config", str(store))
        assert checks["broker"]["status"] == GREEN and "TLS verified" in checks["broker"]["detail"]
        assert checks["TLS client certificate"]["status"] == GREEN and "expires in" in checks["TLS client certificate"]["detail"]
        store.write_text(store.read_text().replace(str(chain / "ca.pem"), str(other / "ca.pem")))
        status, checks = doctor(capsys, "--config", str(store))
        assert status == 1 and checks["broker"]["status"] == RED, "a broker certificate our CA did not sign"
    finally:
        broker.stop()
