"""Members' beacon secrets never reach a store (issue 14): HQ sends each member's day keys for today and
tomorrow (JST) instead, in the feed and in a bootstrap snapshot; the store recognises a member's advert
from them, a raw scan of its database and WAL finds no member's secret, and a store upgraded from a
version that held secrets (or identifier lists) has them wiped from the file."""

from __future__ import annotations

import hmac
import json
import time
from pathlib import Path

from tenpo.cloud.beacon_jobs import issued_until, refresh_beacon_keys
from tenpo.cloud.certs import expiring, record_certificate
from tenpo.cloud.changes import record_changes
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.ble.ids import load_windows, prune_ids
from tenpo.edge.ble.rotating_id import IdTableResolver
from tenpo.edge.config import load_config
from tenpo.edge.feed import apply_page
from tenpo.edge.outbox import set_counter
from tenpo.sandbox import Mosquitto, aggregator_process, provision_store, store_process, wait_until
from tenpo.shared.beacon_id import app_rotating_id, day_key, day_keys, day_start, jst_day, next_day, window_of
from tenpo.shared.protocol import Change, ChangePage


def disk_bytes(database: Path) -> bytes:
    """Everything SQLite keeps on disk for the replica: the file, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*") if p.is_file())


def secret_leaks(raw: bytes, secrets_hex: list[str]) -> list[str]:
    found = []
    for secret_hex in secrets_hex:
        secret = bytes.fromhex(secret_hex)
        for form in (secret_hex.encode(), secret_hex.upper().encode(), secret):
            if form in raw:
                found.append(secret_hex)
    return found


def resolver_now(conn, now: float) -> IdTableResolver:  # type: ignore[no-untyped-def]
    current = window_of(now)
    return IdTableResolver(load_windows(conn, current - 1, current + 1))


def test_stores_get_ids_not_secrets_and_still_recognise_the_member(
    tmp_path: Path, broker: Mosquitto, sqlite_url: str
) -> None:
    s001 = provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url)
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agents = [store_process(s001).start()]
    central = Central(sqlite_url)
    try:
        db1 = edge_db.connect(load_config(str(s001)).database)
        members = [replica.register_member(db1, "S001", name=f"会員 {i}", phone=f"090-1234-567{i}") for i in range(3)]
        secrets_hex = wait_until(
            lambda: (rows := central.all("SELECT beacon_secret FROM members WHERE beacon_secret IS NOT NULL")) and
            len(rows) == 3 and [r[0] for r in rows], 60, what="HQ to give the members their secrets",
        )  # fmt: skip
        wait_until(lambda: db1.conn.execute("SELECT count(DISTINCT member_id) FROM beacon_keys").fetchone()[0] == 3, 60,
                   what="the members' beacon keys at S001")  # fmt: skip

        # The feed (broadcast to every store) carries two day keys per member and no secret at all.
        feed = [(kind, json.loads(data)) for kind, data in central.all("SELECT kind, data FROM changes")]
        assert not [d for _, d in feed if "beacon_secret" in d]
        issued = [d for kind, d in feed if kind == "member.beacon_keys"]
        assert issued and all(len(d["keys"]) == 2 and all(len(k["key"]) == 32 for k in d["keys"]) for d in issued)
        assert not secret_leaks(b"".join(json.dumps(d).encode() for _, d in feed), secrets_hex)

        # A second store joining later gets the ids in its bootstrap snapshot.
        s002 = provision_store(tmp_path / "S002", "S002", broker.url, sqlite_url)
        agents.append(store_process(s002).start())
        db2 = edge_db.connect(load_config(str(s002)).database)
        wait_until(lambda: db2.conn.execute("SELECT count(DISTINCT member_id) FROM beacon_keys").fetchone()[0] == 3, 60,
                   what="the members' beacon keys in S002's snapshot")  # fmt: skip

        # The member's phone, now: both stores recognise her advert (8-byte id and iBeacon 4-byte id).
        now = time.time()
        member = central.scalar("SELECT member_id FROM members WHERE beacon_secret = ?", (secrets_hex[0],))
        advert = app_rotating_id(bytes.fromhex(secrets_hex[0]), window_of(now))
        for db in (db1, db2):
            resolver = resolver_now(db.conn, now)
            assert resolver.resolve(advert, now) == member
            assert resolver.resolve(advert[:4], now) == member
            # An advert captured three days ago names nobody: the store cannot link windows it was not given.
            old = app_rotating_id(bytes.fromhex(secrets_hex[0]), window_of(now) - 3 * 144)
            assert resolver.resolve(old, now - 3 * 86400) is None
            assert resolver_now(db.conn, now - 3 * 86400).resolve(old, now - 3 * 86400) is None

        # A raw copy of either store's disk (database, WAL, shm) holds no member's secret.
        for config in (s001, s002):
            database = load_config(str(config)).database
            assert not secret_leaks(disk_bytes(database), secrets_hex), f"a beacon secret on {database}'s disk"
        assert {m for (m,) in db1.conn.execute("SELECT DISTINCT member_id FROM beacon_keys")} >= set(members) - {None}
        assert db1.conn.execute("SELECT count(*) FROM beacon_keys").fetchone()[0] <= 2 * 3, "two days per member"
    finally:
        for process in [*agents, aggregator]:
            process.kill()
        central.close()


def test_hq_sends_the_next_days_key_a_day_ahead(central_url: str) -> None:
    central = Central(central_url)  # SQLite and PostgreSQL (cloud migration 15 on both)
    now = float(day_start("20270115") + 3600)  # 01:00 JST
    for i in range(3):
        central.execute("INSERT INTO members(member_id, beacon_secret, created_at, updated_at) VALUES (?, ?, ?, ?)",
                        (f"HQ-{i}", f"{i:02x}" * 16, now, now))  # fmt: skip
    central.execute("INSERT INTO members(member_id, beacon_secret, erased, created_at, updated_at)"
                    " VALUES ('HQ-gone', NULL, 1, ?, ?)", (now, now))  # fmt: skip
    assert refresh_beacon_keys(central, now) == 3, "a new HQ issues at once"
    end_of_tomorrow = window_of(day_start("20270117") - 1)
    assert issued_until(central, "HQ-0") == end_of_tomorrow, "keys up to the end of tomorrow (JST)"
    assert refresh_beacon_keys(central, now + 20 * 3600) == 0, "the same day: tomorrow's key is already out"

    # A member registered now gets today's and tomorrow's keys with its member.upsert.
    central.execute("INSERT INTO members(member_id, beacon_secret, created_at, updated_at) VALUES ('HQ-new', ?, ?, ?)",
                    ("0f" * 16, now, now))  # fmt: skip
    with central.transaction():
        record_changes(central, [("member.upsert", "HQ-new", None, {"member_id": "HQ-new", "version": 0})], now)
    assert issued_until(central, "HQ-new") == end_of_tomorrow
    assert refresh_beacon_keys(central, now + 60) == 0

    next_run = float(day_start("20270116") + 300)  # the daily run at 00:05 JST the next day
    assert refresh_beacon_keys(central, next_run) == 4, "every member gets the day after's key"
    rows = [json.loads(d) for (d,) in central.all("SELECT data FROM changes WHERE kind = 'member.beacon_keys' ORDER BY seq")]
    assert [r["member_id"] for r in rows] == ["HQ-0", "HQ-1", "HQ-2", "HQ-new", "HQ-0", "HQ-1", "HQ-2", "HQ-new"]
    assert [k["day"] for k in rows[-2]["keys"]] == ["20270116", "20270117"]
    expected = hmac.digest(bytes.fromhex("02" * 16), b"tenpo-beacon-day:20270117", "sha256")[:16]
    assert rows[-2]["keys"][1]["key"] == expected.hex()
    assert all("beacon_secret" not in json.loads(d) for (d,) in central.all("SELECT data FROM changes"))
    assert issued_until(central, "HQ-0") == window_of(day_start("20270118") - 1)

    # The certificate expiry a birth reports lands in the same migration's table, on both dialects.
    with central.transaction():
        record_certificate(central, "S001", now + 10 * 86400, now)
        record_certificate(central, "S001", now + 12 * 86400, now)  # a renewed certificate replaces it
        record_certificate(central, "S002", now + 400 * 86400, now)
    assert [(s, round(d)) for s, d in expiring(central, now, 30)] == [("S001", 12)]
    central.close()


def test_secrets_already_in_hqs_feed_history_are_scrubbed_by_the_upgrade(central_url: str) -> None:
    central = Central(central_url)
    record = {"member_id": "HQ-1", "name": "佐藤", "beacon_secret": "ab" * 16, "version": 1}
    with central.transaction():
        central.execute("INSERT INTO changes(seq, kind, key, store_id, data, created_at) VALUES (9001, 'member.upsert',"
                        " 'HQ-1', NULL, ?, 0)", (json.dumps(record, ensure_ascii=False),))  # fmt: skip
        # As before this version: migration 15 not applied.
        central.execute("DELETE FROM schema_migrations WHERE version = 15")
        central.execute("DROP TABLE store_certificates")
        central.execute("DROP TABLE beacon_issue")
    central.close()
    central = Central(central_url)  # migrates
    data = json.loads(central.scalar("SELECT data FROM changes WHERE seq = 9001"))
    assert data == {k: v for k, v in record.items() if k != "beacon_secret"}
    central.close()


def keys_change(member_id: str, secret: bytes, now: float) -> Change:
    keys = [{"day": day, "key": key.hex()} for day, key in day_keys(secret, now)]
    return Change(1, "member.beacon_keys", member_id, {"member_id": member_id, "keys": keys}, None)


def test_an_erased_member_leaves_no_beacon_keys_behind(tmp_path: Path) -> None:
    db = edge_db.connect(tmp_path / "S001.db")
    now = 1_800_000_000.0
    for member_id in ("S001-a", "S001-b"):
        db.conn.execute("INSERT INTO members(member_id, version) VALUES (?, 1)", (member_id,))
        apply_page(db, "S001", ChangePage(0, 1, 1, [keys_change(member_id, bytes([len(member_id)]) * 16, now)]))
        set_counter(db.conn, "cursor", 0)
    assert db.conn.execute("SELECT count(*) FROM beacon_keys").fetchone()[0] == 2 * 2
    assert set(load_windows(db.conn, window_of(now), window_of(now))[window_of(now)]) == {"S001-a", "S001-b"}
    apply_page(db, "S001", ChangePage(0, 1, 1, [Change(1, "member.erase", "S001-a", {"member_id": "S001-a"}, None)]))
    assert {m for (m,) in db.conn.execute("SELECT DISTINCT member_id FROM beacon_keys")} == {"S001-b"}
    assert {m for (m,) in db.conn.execute("SELECT DISTINCT member_id FROM beacon_window_ids")} == {"S001-b"}


def test_a_rotated_secret_replaces_the_members_ids_at_the_store(tmp_path: Path) -> None:
    db = edge_db.connect(tmp_path / "S001.db")
    now = 1_800_000_000.0
    current = window_of(now)
    db.conn.execute("INSERT INTO members(member_id, version) VALUES ('S001-a', 1)")
    old, new = b"\x01" * 32, b"\x02" * 32
    apply_page(db, "S001", ChangePage(0, 1, 1, [keys_change("S001-a", old, now)]))
    assert IdTableResolver(load_windows(db.conn, current - 1, current + 1)).resolve(
        app_rotating_id(old, current), now) == "S001-a"  # fmt: skip
    set_counter(db.conn, "cursor", 0)
    apply_page(db, "S001", ChangePage(0, 1, 1, [keys_change("S001-a", new, now)]))  # the app's device rotated
    resolver = IdTableResolver(load_windows(db.conn, current - 1, current + 1))
    assert resolver.resolve(app_rotating_id(new, current), now) == "S001-a"
    assert resolver.resolve(app_rotating_id(old, current), now) is None, "the old secret's ids stop at once"


def test_a_store_holds_two_days_and_an_old_advert_names_nobody(tmp_path: Path) -> None:
    db = edge_db.connect(tmp_path / "S001.db")
    secret = b"\x07" * 32
    now = float(day_start("20270115") + 12 * 3600)
    db.conn.execute("INSERT INTO members(member_id, version) VALUES ('S001-a', 1)")
    apply_page(db, "S001", ChangePage(0, 1, 1, [keys_change("S001-a", secret, now)]))
    held = {day for (day,) in db.conn.execute("SELECT day FROM beacon_keys")}
    assert held == {jst_day(now), next_day(jst_day(now))}
    stored = {bytes(k) for (k,) in db.conn.execute("SELECT key FROM beacon_keys")}
    assert stored == {day_key(secret, d) for d in held}
    last_tomorrow = window_of(day_start("20270117") - 1)  # 23:50 JST tomorrow: still recognised
    assert load_windows(db.conn, last_tomorrow, last_tomorrow)[last_tomorrow]["S001-a"] == app_rotating_id(
        secret, last_tomorrow)  # fmt: skip
    for window in (last_tomorrow + 1, window_of(now) - 3 * 144):  # the day after, three days ago: nobody
        assert load_windows(db.conn, window, window) == {}
    with edge_db.transaction(db):
        prune_ids(db.conn, now + 2 * 86400)
    assert {day for (day,) in db.conn.execute("SELECT day FROM beacon_keys")} == {next_day(jst_day(now))}


def test_an_upgraded_store_has_the_secrets_it_held_wiped_from_its_file(tmp_path: Path) -> None:
    path = tmp_path / "S001.db"
    db = edge_db.connect(path)
    secret = "5ec7e7" * 5 + "ab"  # 16 bytes, easy to spot
    # The store as an earlier version left it: a member with a secret, migration 14 not applied.
    db.conn.execute("INSERT INTO members(member_id, beacon_secret, version) VALUES ('S001-x', ?, 1)", (secret,))
    for table in ("beacon_keys", "beacon_window_ids", "beacon_window_slots"):
        db.conn.execute(f"DROP TABLE {table}")
    db.conn.execute("DROP TRIGGER beacon_keys_erased")
    db.conn.execute("DELETE FROM schema_migrations WHERE version IN (14, 19)")
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.conn.close()
    assert secret.encode() in disk_bytes(path), "the setup really has the secret on disk"

    db = edge_db.connect(path)  # migrations 14 and 19 run
    assert db.conn.execute("SELECT beacon_secret FROM members").fetchone()[0] is None
    db.conn.close()
    assert not secret_leaks(disk_bytes(path), [secret]), "the wiped secret is gone from the file and WAL"


def test_an_upgraded_store_has_the_identifier_lists_it_held_dropped_from_its_file(tmp_path: Path) -> None:
    from tenpo.edge.ble.ids import migrate as migrate_14

    path = tmp_path / "S001.db"
    db = edge_db.connect(path)
    # The store as the previous version left it: migration 14's identifier lists, migration 19 not applied.
    for table in ("beacon_keys", "beacon_window_ids", "beacon_window_slots"):
        db.conn.execute(f"DROP TABLE {table}")
    db.conn.execute("DROP TRIGGER beacon_keys_erased")
    db.conn.execute("DELETE FROM schema_migrations WHERE version = 19")
    migrate_14(db)
    db.conn.execute("INSERT INTO members(member_id, version) VALUES ('S001-x', 1)")
    marker = bytes.fromhex("1d5ca7e01d5ca7e0")
    db.conn.executemany("INSERT INTO beacon_ids(member_id, slot, rid) VALUES ('S001-x', ?, ?)",
                        [(slot, marker) for slot in range(145)])  # fmt: skip
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.conn.close()
    assert marker in disk_bytes(path), "the setup really has the identifiers on disk"

    db = edge_db.connect(path)  # migration 19 runs
    assert not db.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'beacon_ids'").fetchone()
    db.conn.close()
    db = edge_db.connect(path)  # the next open vacuums and truncates the WAL
    db.conn.close()
    assert marker not in disk_bytes(path), "the dropped identifiers are gone from the file and WAL"


def test_an_old_hqs_identifier_list_is_dead_lettered_not_applied(tmp_path: Path) -> None:
    db = edge_db.connect(tmp_path / "S001.db")
    old = {"member_id": "G1", "first_window": 2_900_000, "ids": "0123456789abcdef" * 145}  # version 1's kind
    apply_page(db, "S001", ChangePage(0, 1, 1, [Change(1, "member.beacon_ids", "G1", old, None)]))
    reasons = [r for (r,) in db.conn.execute("SELECT reason FROM dead_letters")]
    assert reasons == ["unknown change kind 'member.beacon_ids'"]
    assert db.conn.execute("SELECT count(*) FROM beacon_keys").fetchone()[0] == 0
