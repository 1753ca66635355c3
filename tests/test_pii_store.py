"""Personal data at rest on the store box (issue 14): a raw copy of the replica, its WAL and its backups
shows no member's name, phone or e-mail; values cannot be moved between rows; the key file, systemd
credentials and both rotations work; lookups keep working through blind indexes and search tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tenpo.edge import db as edge_db
from tenpo.edge import keystore, replica
from tenpo.edge.backup import backup_store
from tenpo.edge.clerk import records
from tenpo.edge.config import load_config
from tenpo.edge.feed import apply_page
from tenpo.edge.membership import sealing
from tenpo.edge.outbox import pending
from tenpo.sandbox import write_store_config
from tenpo.shared import pii
from tenpo.shared.protocol import Change, ChangePage

PEOPLE = [  # (name, kana, phone as typed, E.164, email)
    ("佐藤 花子", "サトウ ハナコ", "090-1234-5678", "+819012345678", "hanako.sato@example.jp"),
    ("鈴木 一郎", "スズキ イチロウ", "080-2222-3333", "+818022223333", "ichiro.suzuki@example.jp"),
    ("高橋 誠", "タカハシ マコト", "070-4444-5555", "+817044445555", "makoto@example.jp"),
]
SECRETS = [s for name, kana, _typed, e164, email in PEOPLE for s in (name.split()[0], name.split()[1], kana.split()[0],
                                                                     e164, e164[3:], email)]  # fmt: skip


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenpo", *args], capture_output=True, text=True, env=dict(os.environ))


def _found_in(path: Path) -> list[str]:
    data = path.read_bytes() if path.exists() else b""
    return [s for s in SECRETS if s.encode("utf-8") in data]


def _old_layout(monkeypatch: pytest.MonkeyPatch, database: Path) -> None:
    """A replica as the tenpo before issue 14 wrote it: plaintext members, a plaintext outbox, a reservation."""
    with monkeypatch.context() as old_tenpo:
        old_tenpo.setattr(edge_db, "MIGRATIONS", [m for m in edge_db.MIGRATIONS if m[0] < 9])
        old_tenpo.setattr(edge_db.membership_sealing, "vacuum_if_pending", lambda conn: False)
        db = edge_db.connect(database)
        with edge_db.transaction(db) as conn:
            for n, (name, kana, _typed, e164, email) in enumerate(PEOPLE):
                member_id = f"S001-{n:04d}"
                conn.execute(
                    "INSERT INTO members(member_id, name, name_key, kana, kana_key, phone, email, card_no, custom,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0)",
                    (member_id, name, name.replace(" ", ""), kana, kana.replace(" ", ""), e164, email, f"C{n:04d}",
                     json.dumps({"tier": "gold", "birth_date": "1980-03-01"})),
                )  # fmt: skip
                payload = {"member_id": member_id, "name": name, "kana": kana, "phone": e164, "email": email,
                           "card_no": None, "line_user_id": None, "consent": {}, "custom": {}, "home_store": "S001"}
                conn.execute("INSERT INTO outbox(seq, id, type, schema, hlc, payload, created_at) VALUES (?, ?,"
                             " 'member.registered', 1, 1, ?, 0)", (n + 1, f"e{n}", json.dumps(payload, ensure_ascii=False)))
            conn.execute("INSERT INTO counters(name, value) VALUES ('outbox', ?)", (len(PEOPLE),))
            conn.execute("INSERT INTO pickup_reservations(reservation_id, sku, qty, from_store, customer, clerk_id,"
                         " event_seq, created_at) VALUES ('S001-P000001', 'A1', 1, 'S002', ?, '1001', 1, 0)",
                         (f"{PEOPLE[0][0]} {PEOPLE[0][3]}",))  # fmt: skip
        assert _found_in(database) or _found_in(database.with_name(database.name + "-wal")), "plaintext before"
        db.conn.close()


@pytest.fixture()
def store(tmp_path: Path):
    config = load_config(str(write_store_config(tmp_path / "S001", "S001", "mqtt://127.0.0.1:1")))
    db = edge_db.connect(config.database)
    yield config, db
    db.conn.close()


def test_an_upgraded_replica_its_wal_and_its_backup_hold_no_name_phone_or_email(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(str(write_store_config(tmp_path / "S001", "S001", "mqtt://127.0.0.1:1")))
    _old_layout(monkeypatch, config.database)
    db = edge_db.connect(config.database)  # this tenpo: migration 9 seals, then VACUUM
    try:
        backup = backup_store(config.database, "S001", tmp_path / "backups").path
        for path in (config.database, config.database.with_name(config.database.name + "-wal"), backup):
            assert path.exists() or path.name.endswith("-wal")
            assert _found_in(path) == [], f"plaintext personal data in {path.name}"
        # ... and everything still answers.
        assert [m.member_id for m in replica.find_members(db, "090-1234-5678")] == ["S001-0000"]
        assert [m.member_id for m in replica.find_members(db, "ｽｽﾞｷ")] == ["S001-0001"]
        member = replica.get_member(db, "S001-0002")
        assert (member.name, member.email, member.custom) == ("高橋 誠", "makoto@example.jp",
                                                              {"tier": "gold", "birth_date": "1980-03-01"})  # fmt: skip
        assert json.loads(db.conn.execute("SELECT custom FROM members WHERE member_id = 'S001-0002'").fetchone()[0]) == {
            "tier": "gold"}, "the birth date left the clear-text custom fields"  # fmt: skip
        assert [e.payload["name"] for e in pending(db.conn, 0, 10)] == [p[0] for p in PEOPLE]
        assert db.conn.execute("SELECT typeof(customer) FROM pickup_reservations").fetchone()[0] == "blob"
        assert db.conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    finally:
        db.conn.close()
    keys = run_cli("edge", "keys", "status", "--json", "--config", str(config.path))
    assert keys.returncode == 0, keys.stderr
    assert json.loads(keys.stdout)["plaintext_members"] == 0


def test_new_registrations_and_their_events_rest_sealed(store) -> None:
    config, db = store
    name, kana, typed, e164, email = PEOPLE[0]
    member_id = replica.register_member(db, "S001", name=name, kana=kana, phone=typed, email=email)
    with edge_db.transaction(db) as conn:
        conn.execute("INSERT INTO products(sku, name, price, tax_class) VALUES ('A1', 'tea', 150, 'reduced')")
    rid = records.request_reservation(db, "S001", "1001", sku="A1", qty=1, from_store="S002",
                                      customer=f"{PEOPLE[2][0]} {PEOPLE[2][3]}")  # fmt: skip
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert _found_in(config.database) == []
    stored = db.conn.execute("SELECT payload FROM outbox WHERE type = 'member.registered'").fetchone()[0]
    assert stored.startswith("sealed:") and name not in stored
    (event,) = [e for e in pending(db.conn, 0, 10) if e.type == "member.registered"]
    assert event.payload["member_id"] == member_id and event.payload["phone"] == e164, "published in the clear to HQ"
    (reservation,) = [e for e in pending(db.conn, 0, 10) if e.type == "reservation.requested"]
    assert reservation.payload["reservation_id"] == rid and reservation.payload["customer"].startswith(PEOPLE[2][0])


def test_a_value_moved_to_another_member_does_not_open(store) -> None:
    _config, db = store
    a = replica.register_member(db, "S001", name="佐藤 花子", phone="090-1234-5678")
    b = replica.register_member(db, "S001", name="鈴木 一郎", phone="080-2222-3333")
    with edge_db.transaction(db) as conn:  # an attacker with write access swaps the phones
        phone_a = conn.execute("SELECT phone FROM members WHERE member_id = ?", (a,)).fetchone()[0]
        conn.execute("UPDATE members SET phone = ? WHERE member_id = ?", (phone_a, b))
    with pytest.raises(pii.PiiError, match="does not open"):
        replica.get_member(db, b)
    assert replica.get_member(db, a).phone == "+819012345678"
    assert replica.find_members(db, "鈴木") == [], "a search skips the tampered member instead of failing"
    assert [m.member_id for m in replica.find_members(db, "佐藤")] == [a]


@pytest.mark.parametrize("query", ["サトウ", "佐藤", "サ", "花子", "ｻﾄｳﾊﾅｺ"])
def test_name_search_reads_the_token_index_in_order_and_stops_at_the_limit(store, query: str) -> None:
    _config, db = store
    for n in range(30):
        replica.register_member(db, "S001", name=f"佐藤 花子{n}", kana="サトウ ハナコ", email=f"h{n}@example.jp")
    replica.register_member(db, "S001", name="Sato Ken", kana="サトウ ケン")
    replica.register_member(db, "S001", name="鈴木 一郎", kana="スズキ イチロウ")
    found = replica.find_members(db, query, limit=5)
    assert len(found) == 5
    assert all(pii.matches(pii.cleansing.search_key(query), m.name, m.kana) for m in found)
    for sql, params in (  # a query up to 6 characters, and a longer one (checked page by page)
        ("SELECT t.member_id FROM member_tokens t JOIN members m ON m.member_id = t.member_id"
         " WHERE t.token = ? AND m.erased = 0 ORDER BY t.rank, t.member_id LIMIT ?", (b"x", 5)),
        ("SELECT t.rank, t.member_id FROM member_tokens t JOIN members m ON m.member_id = t.member_id"
         " WHERE t.token = ? AND (t.rank, t.member_id) > (?, ?) ORDER BY t.rank, t.member_id LIMIT ?", (b"x", -1, "", 5)),
    ):  # fmt: skip
        plan = " ".join(str(row) for row in db.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        assert "TEMP B-TREE" not in plan and "SEARCH t USING PRIMARY KEY (token=?" in plan, plan
    assert replica.count_members(db, "佐藤") >= 30
    assert replica.find_members(db, "スズキイチロウ")[0].name == "鈴木 一郎"  # longer than the indexed prefixes


def test_erasure_and_merge_move_the_search_tokens(store) -> None:
    _config, db = store
    a = replica.register_member(db, "S001", name="佐藤 花子", kana="サトウ ハナコ", phone="090-1234-5678")
    page = ChangePage(0, 2, 2, [
        Change(1, "member.merge", "G1", {"winner": "G1", "losers": [a], "merge_id": 1}),
        Change(2, "member.erase", "G1", {"member_id": "G1"}),
    ])  # fmt: skip
    apply_page(db, "S001", ChangePage(0, 1, 2, page.changes[:1]))
    assert [m.member_id for m in replica.find_members(db, "サトウ")] == ["G1"]
    assert replica.get_member(db, "G1").phone == "+819012345678", "sealed again for the winner's id"
    apply_page(db, "S001", ChangePage(1, 2, 2, page.changes[1:]))
    assert replica.find_members(db, "サトウ") == [] and replica.find_members(db, "09012345678") == []
    assert db.conn.execute("SELECT count(*) FROM member_tokens").fetchone()[0] == 0


def test_a_wrong_or_missing_key_file_is_one_clear_line(store, tmp_path: Path) -> None:
    config, db = store
    replica.register_member(db, "S001", name="佐藤 花子")
    db.conn.close()
    key_file = keystore.default_key_path(config.database)
    assert key_file.stat().st_mode & 0o777 == 0o600
    saved = key_file.read_bytes()
    key_file.unlink()
    missing = run_cli("edge", "keys", "status", "--config", str(config.path))
    assert missing.returncode == 1 and "not found" in missing.stdout + missing.stderr
    keystore.write_key_file(key_file, pii.new_key())
    wrong = run_cli("edge", "member", "find", "佐藤", "--config", str(config.path))
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    key_file.unlink()
    key_file.write_bytes(saved)
    os.chmod(key_file, 0o600)


def test_rotations_keep_the_data_readable_and_retire_the_old_keys(store) -> None:
    config, db = store
    member_id = replica.register_member(db, "S001", name="佐藤 花子", kana="サトウ", phone="090-1234-5678",
                                        email="hanako@example.jp", card_no="C1")  # fmt: skip
    with edge_db.transaction(db) as conn:
        conn.execute("INSERT INTO products(sku, name, price, tax_class) VALUES ('A1', 'tea', 150, 'reduced')")
    rid = records.request_reservation(db, "S001", "1001", sku="A1", qty=1, from_store="S002", customer="高橋 誠")
    db.conn.close()
    key_file = keystore.default_key_path(config.database)
    before = json.loads(run_cli("edge", "keys", "status", "--json", "--config", str(config.path)).stdout)
    old_kek = key_file.read_bytes()
    kek = run_cli("edge", "keys", "rotate", "--json", "--config", str(config.path))
    assert kek.returncode == 0, kek.stderr
    assert key_file.read_bytes() != old_kek and key_file.stat().st_mode & 0o777 == 0o600
    middle = json.loads(run_cli("edge", "keys", "status", "--json", "--config", str(config.path)).stdout)
    assert middle["kek_id"] != before["kek_id"] and middle["dek_id"] == before["dek_id"] and middle["opens"]
    data = run_cli("edge", "keys", "rotate", "--data", "--json", "--config", str(config.path))
    assert data.returncode == 0, data.stderr
    assert json.loads(data.stdout)["resealed"]["members"] == 1
    after = json.loads(run_cli("edge", "keys", "status", "--json", "--config", str(config.path)).stdout)
    assert after["dek_id"] != before["dek_id"] and after["opens"]
    db = edge_db.connect(config.database, create=False)
    try:
        for query in ("090-1234-5678", "hanako@example.jp", "C1", "5678", "サト", "佐藤"):
            assert [m.member_id for m in replica.find_members(db, query)] == [member_id], query
        stored = db.conn.execute("SELECT customer FROM pickup_reservations WHERE reservation_id = ?", (rid,)).fetchone()[0]
        assert sealing.open_customer(db.conn, rid, stored) == "高橋 誠"
        assert [e.payload["name"] for e in pending(db.conn, 0, 10) if e.type == "member.registered"] == ["佐藤 花子"]
        with pytest.raises(pii.PiiError):  # the old key-encryption key opens nothing any more
            wrapped = db.conn.execute("SELECT wrapped FROM pii_keys").fetchone()[0]
            pii.unwrap_key(pii.parse_key(old_kek), wrapped, keystore.WRAP_LABEL)
    finally:
        db.conn.close()


def test_an_interrupted_key_rotation_is_found_again(store) -> None:
    config, db = store
    replica.register_member(db, "S001", name="佐藤 花子")
    key_file = keystore.default_key_path(config.database)
    new = pii.new_key()
    keystore.write_key_file(key_file.with_name(key_file.name + ".new"), new)
    with edge_db.transaction(db) as conn:  # committed, then the power went before the rename
        keystore.rewrap(conn, new)
    db.conn.close()
    db = edge_db.connect(config.database, create=False)
    try:
        assert replica.find_members(db, "佐藤")[0].name == "佐藤 花子"
    finally:
        db.conn.close()
    assert run_cli("edge", "keys", "rotate", "--config", str(config.path)).returncode == 0
    assert not key_file.with_name(key_file.name + ".new").exists()


def test_a_systemd_credential_is_preferred_to_the_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / keystore.CREDENTIAL_NAME).write_bytes(pii.new_key())  # raw 32 bytes, as systemd-creds passes them
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = load_config(str(write_store_config(tmp_path / "S001", "S001", "mqtt://127.0.0.1:1")))
    db = edge_db.connect(config.database)
    try:
        replica.register_member(db, "S001", name="佐藤 花子", phone="090-1234-5678")
        assert not keystore.default_key_path(config.database).exists(), "no key file on the disk"
        assert keystore.status(db.conn).source.startswith("systemd credential")
    finally:
        db.conn.close()
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    keystore.forget()  # as a new process: nothing unwrapped in memory
    with pytest.raises(keystore.KeyError_):
        db = edge_db.connect(config.database, create=False)
        try:
            replica.get_member(db, "x")
        finally:
            db.conn.close()


def test_edge_init_makes_the_key_file_the_config_names(tmp_path: Path) -> None:
    path = write_store_config(tmp_path / "S001", "S001", "mqtt://127.0.0.1:1")
    with path.open("a") as fh:
        fh.write('[keys]\ndata = "secrets/store.datakey"\n')
    made = run_cli("edge", "init", "--config", str(path))
    assert made.returncode == 0, made.stderr
    key_file = tmp_path / "S001" / "secrets" / "store.datakey"
    assert key_file.stat().st_mode & 0o777 == 0o600 and key_file.parent.stat().st_mode & 0o777 == 0o700
    assert not keystore.default_key_path(tmp_path / "S001" / "S001.db").exists()
    status = json.loads(run_cli("edge", "keys", "status", "--json", "--config", str(path)).stdout)
    assert status["opens"] and status["source"] == f"key file {key_file}"
    assert status["kek_id"] == pii.fingerprint(pii.parse_key(key_file.read_bytes()))
