"""A store's key proves who sent an event, not that the store may say it: HQ applies only what the store
may say (docs/authority.md). Attacks by a rogue store with a valid key, through a real Mosquitto broker
and the aggregator, and each rule through apply_batch on SQLite and PostgreSQL."""

from __future__ import annotations

import inspect
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tenpo.cloud.admin import add_store
from tenpo.cloud.aggregator import Aggregator
from tenpo.cloud.apply import apply_batch, reapply_event
from tenpo.cloud.authority import AuthorityConfig, id_store, refusals_text, registered_by
from tenpo.cloud.authority_check import recent_refusals, refusals_by_store, save_config
from tenpo.cloud.channel import reservations
from tenpo.cloud.db import Central
from tenpo.cloud.feed import changes_after
from tenpo.sandbox import Mosquitto
from tenpo.shared import crypto
from tenpo.shared.mqtt import parse_broker_url
from tenpo.shared.protocol import Envelope, Event, EventBatch, encode, up_topic

OWNER = {"member_id": "S001-a1", "name": "佐藤 花子", "kana": "サトウハナコ", "phone": "+819012345678",
         "email": "hanako@example.jp"}  # fmt: skip
TAKEOVER = {"member_id": "S001-a1", "name": "攻撃 者", "phone": "+819099999999", "email": "attacker@example.com"}


def event(seq: int, type_: str, payload: dict) -> Event:
    return Event(seq, uuid.uuid4().hex, type_, 1, seq << 16, payload)


def stock(seq: int, delta: int = 1) -> Event:
    return event(seq, "stock.adjusted", {"sku": "A1", "delta": delta, "reason": "count", "location": "floor"})


def points(seq: int, member_id: str, delta: int, ref: str | None, kind: str = "accrual") -> Event:
    return event(seq, "points.entry", {"member_id": member_id, "delta": delta, "kind": kind,
                                       **({"ref": ref} if ref else {})})  # fmt: skip


def sale(seq: int, receipt_no: str, member_id: str, total: int, earned: int, kind: str = "sale") -> Event:
    return event(seq, "sale.refunded" if kind == "refund" else "sale.completed", {
        "receipt_no": receipt_no, "kind": kind, "at": "2026-11-30T10:15:00+09:00", "member_id": member_id,
        "total": total, "rates": [{"rate": 10, "tax": total // 11}], "stock_movements": [],
        "points_entries": [{"member_id": member_id, "kind": "accrue", "points": earned}], "points_earned": earned,
        "points_redeemed": 0, **({"refund_of": "S002-00000001"} if kind == "refund" else {}),
    })  # fmt: skip


def balance(db: Central, member_id: str) -> int:
    return int(db.scalar("SELECT coalesce(sum(delta), 0) FROM points_ledger WHERE member_id = ?", (member_id,), 0))


def member(db: Central, member_id: str = "S001-a1") -> dict:
    row = db.one("SELECT name, phone, email FROM members WHERE member_id = ?", (member_id,))
    return dict(zip(("name", "phone", "email"), row)) if row else {}


def letters(db: Central, store_id: str = "S002") -> list[str]:
    return [r[0] for r in db.all("SELECT reason FROM dead_letters WHERE store_id = ? ORDER BY id", (store_id,))]


def fed_names(db: Central) -> list[str]:
    """What every store would receive about members through the change feed."""
    return [c.data.get("name") for c in changes_after(db, 0, 1000, "S003").changes if c.kind == "member.upsert"]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, crypto.Ed25519PrivateKey]:
    found = {}
    for store_id in ("S001", "S002"):
        crypto.generate_keypair(tmp_path / f"{store_id}.key", tmp_path / f"{store_id}.pub")
        found[store_id] = crypto.load_private_key(tmp_path / f"{store_id}.key")
    return found


@pytest.fixture
def central(central_url: str, keys: dict[str, crypto.Ed25519PrivateKey]) -> Iterator[Central]:
    db = Central(central_url)
    for store_id, key in keys.items():
        add_store(db, store_id, crypto.public_key_pem(key), store_id)
    apply_batch(db, "S001", EventBatch("s1", [event(1, "member.registered", OWNER)]))
    yield db
    db.close()


# ---------------------------------------------------------------------------- through the broker


@dataclass
class Link:
    """A store's signed upstream through the broker, and the acks HQ sends it."""

    client: mqtt.Client
    key: crypto.Ed25519PrivateKey
    store_id: str
    acks: list[dict] = field(default_factory=list)
    got: threading.Condition = field(default_factory=threading.Condition)

    def send(self, batch: EventBatch) -> dict:
        body = encode(batch)
        envelope = encode(Envelope(1, self.store_id, "events", body.decode(), crypto.sign(self.key, body)))
        with self.got:
            before = len(self.acks)
            self.client.publish(up_topic(self.store_id, "events"), envelope, qos=1).wait_for_publish(5)
            assert self.got.wait_for(lambda: len(self.acks) > before, 15), "HQ acknowledged the batch"
            return self.acks[-1]


@pytest.fixture
def hq(broker: Mosquitto, central_url: str, central: Central) -> Iterator[Aggregator]:
    aggregator = Aggregator(central_url, parse_broker_url(broker.url))
    stop = threading.Event()
    thread = threading.Thread(target=aggregator.run, args=(stop,), daemon=True)
    thread.start()
    assert aggregator.connected.wait(10)
    yield aggregator
    stop.set()
    thread.join(10)


@pytest.fixture
def rogue(broker: Mosquitto, keys: dict[str, crypto.Ed25519PrivateKey], hq: Aggregator) -> Iterator[Link]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    link = Link(client, keys["S002"], "S002")

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with link.got:
            link.acks.append(json.loads(message.payload))
            link.got.notify_all()

    subscribed = threading.Event()
    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.subscribe("tenpo/v1/stores/S002/down/ack", qos=1)
    assert subscribed.wait(10), "the rogue store hears its acks"
    yield link
    client.loop_stop()
    client.disconnect()


def test_a_store_cannot_rewrite_another_stores_member(central: Central, rogue: Link) -> None:
    """S002, signing correctly on its own topic, rewrites name, phone and e-mail of S001's member."""
    ack = rogue.send(EventBatch("s2", [event(1, "member.updated", TAKEOVER), stock(2, delta=3)]))
    assert ack["hwm"] == 2 and not ack.get("gap"), "the store is acknowledged: it stops resending"
    assert member(central) == {"name": "佐藤 花子", "phone": "+819012345678", "email": "hanako@example.jp"}
    assert "攻撃 者" not in fed_names(central), "nothing of the edit reaches the other stores"
    assert any("member-owner" in r and "S001-a1" in r and "registered at S001" in r for r in letters(central))
    assert int(central.scalar("SELECT coalesce(sum(delta), 0) FROM stock_ledger WHERE store_id = 'S002'")) == 3, \
        "the rest of the batch applies"
    assert refusals_by_store(central, 0) == {"S002": 1}


def test_a_store_cannot_mint_points(central: Central, rogue: Link) -> None:
    """S002 sends a points.entry of 1,000,000 for S001's member with no sale behind it, then with a made-up
    small sale; neither is applied, and the stream moves on."""
    ack = rogue.send(EventBatch("s2", [
        points(1, "S001-a1", 1_000_000, None),
        points(2, "S001-a1", 1_000_000, "S002-00000001"), sale(3, "S002-00000001", "S001-a1", 1_000, 1_000_000),
        stock(4),
    ]))  # fmt: skip
    assert ack["hwm"] == 4 and not ack.get("gap")
    assert balance(central, "S001-a1") == 0
    reasons = letters(central)
    assert any("points-link" in r and "no sale" in r for r in reasons), reasons
    assert any("points-cap" in r and "¥1,000 sale" in r for r in reasons), reasons
    feed = [c.data for c in changes_after(central, 0, 1000, "S001").changes if c.kind == "points.balance"]
    assert all(b["balance"] == 0 for b in feed), "no store hears of the minted points"


def test_a_store_cannot_answer_or_ship_another_stores_reservation(central: Central, rogue: Link) -> None:
    """S002 confirms, hands over and ships S001's 取り置き: each is one dead letter naming reservation-owner, the
    reservation stays as S001 left it, the stock event of the same batch applies and S002 is acknowledged."""
    with central.transaction():
        held, _ = reservations.create(
            central, reservation_id="S001-P000001", channel="store:S001", store_id="S001", sku="A1", qty=1,
            member_id=None, customer="山田", pickup_store="S001", hold_s=3600.0, confirm_s=900.0,
            now=time.time(), held_by_store=True)  # fmt: skip
    answer = {"reservation_id": "S001-P000001", "sku": "A1", "qty": 1}
    ack = rogue.send(EventBatch("s2", [
        event(1, "reservation.confirmed", answer), stock(2, delta=3),
        event(3, "reservation.picked_up", {**answer, "receipt_no": "S002-00000001"}),
        event(4, "reservation.shipped", {**answer, "transfer_id": "TR-S002-1", "to_store": "S002"}),
    ]))  # fmt: skip
    assert ack["hwm"] == 4 and not ack.get("gap"), "the store is acknowledged: it stops resending"
    assert reservations.row(central, "S001-P000001") == held
    reasons = letters(central)
    assert len(reasons) == 3 and all("reservation-owner" in r and "held at S001" in r for r in reasons), reasons
    assert int(central.scalar("SELECT coalesce(sum(delta), 0) FROM stock_ledger WHERE store_id = 'S002'")) == 3
    assert refusals_text(list(refusals_by_store(central, 0).items())).startswith("⚠ authority refused S002×3")


# ---------------------------------------------------------------------------- each rule (both dialects)


def test_the_registering_store_edits_its_member_and_after_a_merge_so_do_the_stores_behind_it(central: Central) -> None:
    apply_batch(central, "S001", EventBatch("s1", [event(2, "member.updated", {"member_id": "S001-a1",
                                                                                "phone": "+819011112222"})]))  # fmt: skip
    assert member(central)["phone"] == "+819011112222"
    assert registered_by("G1", "G1", ["S001-a1", "S002-b2"]) == {"S001", "S002"}
    assert id_store("S-01-0a1f") == "S-01" and id_store("G00001") is None


def test_another_store_may_edit_contact_fields_with_the_member_present_within_the_hourly_limit(central: Central) -> None:
    save_config(central, AuthorityConfig(contact_edits_per_hour=2), "test")
    present = {"clerk_id": "C07", "member_present": True}
    edits = [
        {"member_id": "S001-a1", "phone": "+819033334444", **present},
        {"member_id": "S001-a1", "card_no": "9999", **present},  # an owner-only field
        {"member_id": "S001-a1", "email": "new@example.jp", **present},
        {"member_id": "S001-a1", "name": "三回目", **present},  # over the limit
    ]
    for seq, payload in enumerate(edits, 1):  # one batch each, as a clerk's edits reach HQ
        assert apply_batch(central, "S002", EventBatch("s2", [event(seq, "member.updated", payload)])).hwm == seq
    assert member(central) == {"name": "佐藤 花子", "phone": "+819033334444", "email": "new@example.jp"}
    reasons = letters(central)
    assert any("member-fields" in r and "card_no" in r for r in reasons)
    assert any("contact-rate" in r and "limit 2" in r for r in reasons)
    edits = central.all("SELECT clerk_id, fields FROM authority_edits ORDER BY id")
    assert edits == [("C07", "phone"), ("C07", "email")], "each allowed edit is recorded with its clerk"
    assert refusals_by_store(central, 0) == {"S002": 2}


def test_points_held_for_a_sale_in_the_next_batch_apply_when_it_comes(central: Central) -> None:
    apply_batch(central, "S002", EventBatch("s2", [stock(1), points(2, "S001-a1", 30, "S002-00000001")]))
    assert balance(central, "S001-a1") == 0, "waiting for its sale"
    apply_batch(central, "S002", EventBatch("s2", [sale(3, "S002-00000001", "S001-a1", 3_000, 30), stock(4)]))
    assert balance(central, "S001-a1") == 30
    assert letters(central) == [] and central.scalar("SELECT count(*) FROM authority_held") == 0
    # Applied once: a redelivery of both batches changes nothing.
    apply_batch(central, "S002", EventBatch("s2", [stock(1), points(2, "S001-a1", 30, "S002-00000001")]))
    assert balance(central, "S001-a1") == 30


def test_points_whose_sale_never_comes_are_refused_once_the_stream_moves_past_them(central: Central) -> None:
    apply_batch(central, "S002", EventBatch("s2", [points(1, "S001-a1", 500, "S002-00000009")]))
    apply_batch(central, "S002", EventBatch("s2", [stock(seq) for seq in range(2, 30)]))
    assert balance(central, "S001-a1") == 0 and letters(central) == [], "held, judged with the next sale"
    apply_batch(central, "S002", EventBatch("s2", [sale(30, "S002-00000010", "S001-a1", 500, 0)]))
    assert balance(central, "S001-a1") == 0
    reasons = letters(central)
    assert len(reasons) == 1 and "points-link" in reasons[0] and "S002-00000009" in reasons[0]
    letter_id = central.scalar("SELECT id FROM dead_letters WHERE store_id = 'S002'")
    assert "discard it" in (reapply_event(central, int(letter_id)) or ""), "a refusal cannot be retried into effect"
    assert balance(central, "S001-a1") == 0


def test_splitting_a_grant_over_many_entries_does_not_pass_the_cap(central: Central) -> None:
    ack = apply_batch(central, "S002", EventBatch("s2", [
        *[points(seq, "S001-a1", 10, "S002-00000002") for seq in range(1, 6)],
        sale(6, "S002-00000002", "S001-a1", 3_000, 30),  # may earn at most 300 (10 per ¥100): 50 is fine
        points(7, "S001-a1", 200, "S002-00000003"), points(8, "S001-a1", 200, "S002-00000003"),
        sale(9, "S002-00000003", "S001-a1", 3_000, 400),  # 400 > 300: the second entry is refused
        points(10, "S001-a1", 5, "S002-00000004", kind="adjustment"),
        points(11, "S001-a1", 40, "S002-00000005", kind="reversal"), sale(12, "S002-00000005", "S001-a1", 3_000, 0),
        points(13, "S002-zz", 40, "S002-00000006"), sale(14, "S002-00000006", "S001-a1", 9_000, 40),
    ]))  # fmt: skip
    assert ack.hwm == 14
    assert balance(central, "S001-a1") == 50 + 200
    rules = sorted(r.split("authority rule ")[1].split(":")[0] for r in letters(central))
    assert rules == ["points-cap", "points-kind", "points-link", "points-member"]


def test_a_refund_gives_back_points_within_what_it_refunds(central: Central) -> None:
    apply_batch(central, "S002", EventBatch("s2", [
        points(1, "S001-a1", 300, "S002-00000007", kind="reversal"),
        points(2, "S001-a1", -10, "S002-00000007", kind="reversal"),
        sale(3, "S002-00000007", "S001-a1", -500, -10, kind="refund"),
        points(4, "S001-a1", 900, "S002-00000008", kind="reversal"),
        sale(5, "S002-00000008", "S001-a1", -500, 0, kind="refund"),
    ]))  # fmt: skip
    assert balance(central, "S001-a1") == 290
    assert [r.split("authority rule ")[1].split(":")[0] for r in letters(central)] == ["points-cap"]


def test_a_store_moves_only_its_own_stock(central: Central) -> None:
    apply_batch(central, "S002", EventBatch("s2", [stock(1, delta=-50)]))
    rows = central.all("SELECT DISTINCT store_id FROM stock_ledger")
    assert rows == [("S002",)], "a stock event has no store field: it always moves the sender's own stock"


def test_a_store_registers_only_under_its_own_prefix(central: Central, keys: dict) -> None:
    add_store(central, "S", crypto.public_key_pem(keys["S002"]), "S")
    apply_batch(central, "S", EventBatch("s", [event(1, "member.registered", {"member_id": "S-01-b2", "name": "x"})]))
    assert central.scalar("SELECT count(*) FROM members WHERE member_id = 'S-01-b2'") == 0
    assert "not a provisional id of store S" in letters(central, "S")[0]


def test_refusals_are_listed_newest_first(central: Central) -> None:
    apply_batch(central, "S002", EventBatch("s2", [event(1, "member.updated", TAKEOVER), points(2, "S001-a1", 9, None)]))
    found = recent_refusals(central)
    assert [(r[1], r[2], r[3]) for r in found] == [("S002", "points-link", 2), ("S002", "member-owner", 1)]


# ---------------------------------------------------------------------------- the HQ monitor


async def test_the_hq_monitor_alerts_on_refusals_per_store_and_lists_them(tmp_path: Path) -> None:
    from tenpo.cloud.hq import sim
    from tenpo.cloud.hq.app import HqApp
    from tenpo.cloud.hq.config import MonitorConfig
    from tenpo.cloud.hq.data import HqData

    async def until(pilot: object, predicate: object, what: str) -> None:
        for _ in range(1000):  # at most 10 s: only stops a broken test from hanging
            if predicate():  # type: ignore[operator]
                return
            await pilot.pause(0.01)  # type: ignore[attr-defined]
        raise AssertionError(f"timed out waiting for {what}")

    url = f"sqlite:///{tmp_path / 'central.db'}"
    db = Central(url)
    sim.seed_stores(db, 3)
    apply_batch(db, "S001", EventBatch("stream-001", [event(61, "member.registered", OWNER)]))
    ack = apply_batch(db, "S002", EventBatch("stream-002", [event(61, "member.updated", TAKEOVER),
                                                            points(62, "S001-a1", 1_000_000, None)]))  # fmt: skip
    assert ack.hwm == 62
    signed_in: dict = {}
    if "operator" in inspect.signature(HqApp.__init__).parameters:  # the monitor asks operators to sign in
        from tests.support.operators import TEST_ADMIN  # late: only once sign-in exists

        signed_in["operator"] = TEST_ADMIN
    app = HqApp(HqData(url, MonitorConfig()), **signed_in)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.stores_screen.refreshes > 0, what="the first refresh")
        summary = str(app.stores_screen.query_one("#summary").render())
        assert summary.startswith("⚠ authority refused S002×2"), summary
        await pilot.press("d")
        screen = app.screen
        await until(pilot, lambda: getattr(screen, "letters", None), what="the dead letters")
        reasons = [d.reason for d in screen.letters if d.store_id == "S002"]
        assert any("member-owner" in r for r in reasons) and any("points-link" in r for r in reasons), reasons
    db.close()


def test_authority_commands_list_refusals_and_change_the_limits(central: Central, capsys, monkeypatch) -> None:
    from tenpo.cli import main
    from tests.support.operators import sign_in_as

    url = central.url.target if central.dialect == "postgresql" else f"sqlite:///{central.url.target}"
    apply_batch(central, "S002", EventBatch("s2", [event(1, "member.updated", TAKEOVER)]))
    assert main(["cloud", "authority", "list", "--store", "S002", "--json", "--db", url]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["store_id"], listed["rule"], listed["event_seq"]) == ("S002", "member-owner", 1)
    assert main(["cloud", "authority", "set", "--contact-edits-per-hour", "1", "--db", url]) == 1
    assert "--operator" in capsys.readouterr().err  # the limits are an admin's to change
    admin = sign_in_as(monkeypatch, url)
    assert main(["cloud", "authority", "set", "--contact-edits-per-hour", "0", *admin, "--db", url]) == 1
    assert "at least 1" in capsys.readouterr().err
    assert main(["cloud", "authority", "set", "--contact-edits-per-hour", "1", *admin, "--db", url]) == 0
    capsys.readouterr()
    assert main(["cloud", "authority", "show", "--json", "--db", url]) == 0
    assert json.loads(capsys.readouterr().out)["contact_edits_per_hour"] == 1
    present = {"clerk_id": "C01", "member_present": True}
    aggregator = Central(url)  # aggregators read the limits within 30 s; a new one at once
    for seq in (2, 3):  # the second edit this hour is over the new limit
        edit = event(seq, "member.updated", {"member_id": "S001-a1", "kana": f"カナ{seq}", **present})
        apply_batch(aggregator, "S002", EventBatch("s2", [edit]))
    aggregator.close()
    assert "contact-rate" in letters(central)[-1]
    assert central.scalar("SELECT count(*) FROM audit_log WHERE action = 'authority.set'") == 1


def test_points_held_for_a_stream_that_ended_are_refused_and_the_new_stream_holds_its_own(central: Central) -> None:
    apply_batch(central, "S002", EventBatch("old", [points(1, "S001-a1", 40, "S002-00000011")]))
    # The store's database was replaced: a new stream, whose first batch ends on a points entry of the same seq.
    apply_batch(central, "S002", EventBatch("new", [points(1, "S001-a1", 20, "S002-00000001")]))
    assert any("stream ended" in r for r in letters(central)), "the old stream's entry can never see its sale"
    apply_batch(central, "S002", EventBatch("new", [sale(2, "S002-00000001", "S001-a1", 2_000, 20)]))
    assert balance(central, "S001-a1") == 20, "the new stream's entry, held under the same seq, was kept and applied"
