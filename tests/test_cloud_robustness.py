"""HQ keeps serving whatever a client sends: each bad message or event is one dead letter, never an outage."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tenpo.cli import main
from tenpo.cloud.admin import add_store
from tenpo.cloud.aggregator import Aggregator
from tenpo.cloud.apply import KeyRing, apply_batch
from tenpo.cloud.db import MIGRATIONS, Central
from tenpo.sandbox import Mosquitto, wait_until
from tenpo.shared import crypto
from tenpo.shared.errors import ConfigError
from tenpo.shared.mqtt import parse_broker_url
from tenpo.shared.protocol import MAX_NESTING, Envelope, Event, EventBatch, encode, too_deep, up_topic


@pytest.fixture
def store_key(tmp_path: Path) -> crypto.Ed25519PrivateKey:
    crypto.generate_keypair(tmp_path / "S001.key", tmp_path / "S001.pub")
    return crypto.load_private_key(tmp_path / "S001.key")


def signed(key: crypto.Ed25519PrivateKey, batch: EventBatch) -> bytes:
    body = encode(batch)
    return encode(Envelope(1, "S001", "events", body.decode(), crypto.sign(key, body)))


def stock_event(seq: int, delta: int = 1) -> Event:
    return Event(seq, uuid.uuid4().hex, "stock.adjusted", 1, seq << 16,
                 {"sku": "A1", "delta": delta, "reason": "count", "location": "floor"})  # fmt: skip


def on_hand(db: Central) -> int:
    return int(db.scalar("SELECT coalesce(sum(delta), 0) FROM stock_ledger WHERE store_id = 'S001'", (), 0))


# ---------------------------------------------------------------------------- nesting is bounded before decoding


def test_nesting_depth_is_judged_outside_strings() -> None:
    assert not too_deep(b"[" * MAX_NESTING + b"]" * MAX_NESTING)
    assert too_deep(b"[" * (MAX_NESTING + 1) + b"]" * (MAX_NESTING + 1))
    assert too_deep(b"[" * 1000), "unclosed brackets are as deep as they open"
    text_with_brackets = json.dumps({"note": '[[[{{{ \\" ' * 50, "lines": [[{"a": "]]]"}]]}).encode()
    assert not too_deep(text_with_brackets), "brackets and escaped quotes inside strings do not count"
    hidden = b"".join(b'["]",' for _ in range(200)) + b"0" + b"]" * 200
    assert json.loads(hidden) and too_deep(hidden), "a closing bracket inside a string closes nothing"


# ---------------------------------------------------------------------------- the aggregator keeps serving


class RunningAggregator:
    """An aggregator in a thread and a client that publishes as a store and collects its acks."""

    def __init__(self, db_url: str, broker: Mosquitto) -> None:
        self.aggregator = Aggregator(db_url, parse_broker_url(broker.url))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.aggregator.run, args=(self.stop,), daemon=True)
        self.thread.start()
        assert self.aggregator.connected.wait(10)
        self.acks: list[dict] = []
        self.got_ack = threading.Event()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: (self.acks.append(json.loads(m.payload)), self.got_ack.set())
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe("tenpo/v1/stores/S001/down/ack", qos=1)
        assert subscribed.wait(10)

    def publish(self, payload: bytes) -> None:
        self.client.publish(up_topic("S001", "events"), payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def running(
    sqlite_url: str, broker: Mosquitto, store_key: crypto.Ed25519PrivateKey
) -> Iterator[tuple[Central, RunningAggregator]]:
    db = Central(sqlite_url)
    add_store(db, "S001", crypto.public_key_pem(store_key))
    hq = RunningAggregator(sqlite_url, broker)
    yield db, hq
    hq.close()
    db.close()


def test_a_deeply_nested_unsigned_message_is_a_dead_letter_not_an_outage(running, store_key) -> None:
    db, hq = running
    hostile = b'{"v":1,"store":"S001","kind":"events","body":"{}","sig":"","extra":' + b"[" * 1000 + b"]" * 1000 + b"}"
    assert len(hostile) < 2100
    hq.publish(hostile)
    reason = wait_until(lambda: db.scalar("SELECT reason FROM dead_letters"), 15, what="the dead letter")
    assert "nested deeper than" in reason
    hq.publish(signed(store_key, EventBatch("s", [stock_event(1, delta=3)])))
    assert hq.got_ack.wait(10), "the aggregator still serves after the hostile message"
    assert hq.acks[-1]["hwm"] == 1 and on_hand(db) == 3
    assert hq.thread.is_alive()


class FlakyKeys(KeyRing):
    """The key lookup fails once the way a database under strain does."""

    def __init__(self, db: Central) -> None:
        super().__init__(db)
        self.failed = False

    def get(self, store_id: str):  # noqa: ANN201
        if not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("disk I/O error")
        return super().get(store_id)


def test_any_failure_opening_a_message_is_its_dead_letter_and_the_next_applies(running, store_key) -> None:
    db, hq = running
    hq.aggregator.keys = FlakyKeys(hq.aggregator.db)
    hq.publish(signed(store_key, EventBatch("s", [stock_event(1)])))
    reason = wait_until(lambda: db.scalar("SELECT reason FROM dead_letters"), 15, what="the dead letter")
    assert reason == "unreadable: OperationalError: disk I/O error"
    assert db.scalar("SELECT dead_letters FROM stores WHERE store_id = 'S001'") == 1
    hq.publish(signed(store_key, EventBatch("s", [stock_event(1), stock_event(2)])))  # the store resends
    assert hq.got_ack.wait(10)
    assert hq.acks[-1]["hwm"] == 2 and on_hand(db) == 2


# ---------------------------------------------------------------------------- commands: one line, the right exit


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", [
    ["cloud", "status"], ["hq", "--broker", "none"], ["cloud", "conflicts"], ["cloud", "members", "show", "M1"],
    ["cloud", "members", "export"], ["cloud", "asn", "list"], ["cloud", "visits", "M1"],
])  # fmt: skip
def test_read_commands_on_a_mistyped_database_path_create_nothing(tmp_path: Path, command: list[str], capsys) -> None:
    missing = tmp_path / "centrl.db"
    assert main([*command, "--db", f"sqlite:///{missing}"]) == 1
    assert "the database does not exist" in one_line_error(capsys)
    assert not missing.exists()


def test_a_database_from_a_newer_tenpo_is_refused_naming_both_versions(central_url: str, capsys) -> None:
    db = Central(central_url)
    known = max(version for version, *_ in MIGRATIONS)
    with db.transaction():
        db.execute("INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, 'from the future', 0)", (known + 5,))
    db.close()
    with pytest.raises(ConfigError) as refused:
        Central(central_url)
    assert f"schema version {known + 5}, newer than this tenpo knows ({known})" in str(refused.value)
    assert main(["cloud", "status", "--db", central_url]) == 1
    assert f"version {known + 5}" in one_line_error(capsys)


def test_a_file_that_is_not_sqlite_is_one_line(tmp_path: Path, capsys) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n" * 20)
    for command in (["cloud", "status"], ["cloud", "product", "import", str(passwd)]):
        assert main([*command, "--db", f"sqlite:///{passwd}"]) == 1
        assert "is not an SQLite database" in one_line_error(capsys)
    assert passwd.read_text().startswith("root:x:0:0"), "the file is left as it was"


def test_a_damaged_central_database_is_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "central.db"
    Central(f"sqlite:///{path}").close()
    data = bytearray(path.read_bytes())
    data[100:120] = b"\xff" * 20  # the schema table's page header
    path.write_bytes(data)
    assert main(["cloud", "status", "--db", f"sqlite:///{path}"]) == 1
    assert "malformed" in one_line_error(capsys)


@pytest.mark.parametrize("url", [
    "postgresql://tenpo@127.0.0.1/tenpo?nonsense=1", "postgresql://te%ZZ@127.0.0.1/tenpo", "postgresql://tenpo@[::1/tenpo",
    "postgresql://tenpo@127.0.0.1:1/tenpo",  # nothing listens there
])  # fmt: skip
def test_a_bad_or_unreachable_postgresql_is_one_line(url: str, capsys) -> None:
    assert main(["cloud", "status", "--db", url]) == 1
    assert one_line_error(capsys).startswith("tenpo: --db: cannot connect to PostgreSQL (")


def test_imports_with_rejected_rows_exit_1_after_importing_the_good_ones(tmp_path: Path, sqlite_url: str, capsys) -> None:
    db = ["--db", sqlite_url]
    products = tmp_path / "products.csv"
    products.write_text("sku,jan,name,price,tax_class\nA1,,緑茶,150,reduced\nB2,,傘,abc,standard\n")
    assert main(["cloud", "product", "import", str(products), *db]) == 1
    out, err = capsys.readouterr()
    assert "1 created" in out and "1 rejected" in out and "price 'abc'" in err

    members = tmp_path / "members.csv"
    # A bad field is kept and flagged; only a row without an identity is rejected.
    members.write_text("source,source_id,name,email\nlegacy,1,山田 太郎,taro@example.jp\n"
                       "legacy,2,Bad Mail,not-an-email\nlegacy,,No Id,x@example.jp\n")
    assert main(["cloud", "import", "members", str(members), *db]) == 1
    out, err = capsys.readouterr()
    assert "2 created" in out and "1 rejected" in out and "line 4" in err

    asns = tmp_path / "asns.csv"
    asns.write_text("shipment_id,store,gtin,qty\nC1,S001,4901085089583,12\n,S001,4901085089583,1\n")
    add_store(Central(sqlite_url), "S001", crypto.public_key_pem(crypto.Ed25519PrivateKey.generate()))
    assert main(["cloud", "asn", "import", str(asns), *db]) == 1
    out, err = capsys.readouterr()
    assert "1 created" in out and "1 row refused" in out and "rejected line 3" in err

    central = Central(sqlite_url, create=False)
    assert central.scalar("SELECT count(*) FROM products") == 1
    assert central.scalar("SELECT count(*) FROM member_sources") == 2
    assert central.scalar("SELECT count(*) FROM asns") == 1
    central.close()


# ---------------------------------------------------------------------------- one event never stalls a stream


@pytest.fixture
def central(central_url: str, store_key: crypto.Ed25519PrivateKey) -> Iterator[Central]:
    db = Central(central_url)
    add_store(db, "S001", crypto.public_key_pem(store_key))
    yield db
    db.close()


def letters(db: Central) -> list[tuple[str, int | None]]:
    return [(str(r[0]), r[1]) for r in db.all("SELECT reason, event_seq FROM dead_letters ORDER BY id")]


def test_an_event_beyond_64_bits_is_a_dead_letter_alone_and_the_stream_moves_on(central: Central) -> None:
    huge = Event(2, uuid.uuid4().hex, "stock.adjusted", 1, 2**70, {"sku": "A1", "delta": 5, "reason": "count"})
    batch = EventBatch("s", [stock_event(1), huge, stock_event(3)])
    ack = apply_batch(central, "S001", batch)
    assert (ack.hwm, ack.gap, ack.error) == (3, False, None)
    assert on_hand(central) == 2, "the events around it applied"
    ((reason, seq),) = letters(central)
    assert reason.startswith("event 2 (stock.adjusted): cannot be applied (") and seq is None
    assert apply_batch(central, "S001", batch).hwm == 3, "a resend is a duplicate"
    assert len(letters(central)) == 1, "and adds no dead letter"
    assert apply_batch(central, "S001", EventBatch("s", [stock_event(4)])).hwm == 4
    assert central.scalar("SELECT dead_letters FROM stores WHERE store_id = 'S001'") == 1


def test_a_quantity_beyond_64_bits_is_a_dead_letter_naming_the_event(central: Central) -> None:
    ack = apply_batch(central, "S001", EventBatch("s", [stock_event(1), stock_event(2, delta=2**70), stock_event(3)]))
    assert ack.hwm == 3 and on_hand(central) == 2
    ((reason, seq),) = letters(central)
    assert reason.startswith("event 2 (stock.adjusted): ") and seq == 2


def test_an_effect_the_database_refuses_is_a_dead_letter_kept_for_a_retry(postgres_url: str, store_key) -> None:
    """PostgreSQL refuses a NUL character in text: a DataError while writing one event's effects."""
    db = Central(postgres_url)
    add_store(db, "S001", crypto.public_key_pem(store_key))
    bad = Event(2, "e2", "stock.adjusted", 1, 2 << 16, {"sku": "A1", "delta": 5, "reason": "count\x00"})
    ack = apply_batch(db, "S001", EventBatch("s", [stock_event(1), bad, stock_event(3)]))
    assert ack.hwm == 3 and on_hand(db) == 2
    ((reason, seq),) = letters(db)
    assert reason.startswith("event 2 (stock.adjusted): cannot be applied (") and seq == 2, "kept for a retry"
    assert db.scalar("SELECT count(*) FROM events WHERE store_id = 'S001'") == 3
    db.close()


def test_a_replay_of_an_old_stream_after_a_wipe_says_so_and_changes_nothing(central: Central) -> None:
    old = EventBatch("old", [stock_event(1), stock_event(2)])
    apply_batch(central, "S001", old)
    assert apply_batch(central, "S001", EventBatch("new", [stock_event(1, delta=10)])).hwm == 1  # the store was wiped
    replay = apply_batch(central, "S001", old)
    assert replay.hwm == 2 and replay.error, "the old sender is told, and stops resending"
    ((reason, seq),) = letters(central)
    assert "replay of an old stream after the store's database was replaced" in reason and seq is None
    assert on_hand(central) == 12
    assert central.scalar("SELECT stream FROM stores WHERE store_id = 'S001'") == "new"
    assert apply_batch(central, "S001", EventBatch("new", [stock_event(2, delta=100)])).hwm == 2
    assert on_hand(central) == 112
