"""HQ's side of お取り寄せ for home delivery (issue 18 §7) through the real apply path, on SQLite and PostgreSQL:
the ordering store's delivery.requested becomes a reservation held at the shipping store, which alone is sent the
address, ahead of the reservation; a replayed batch makes nothing twice; one HQ refuses never reaches that store;
an id that is not the sender's, or a delivery from the sender itself, is a dead letter."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenpo.cloud.admin import add_store, import_products
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.db import Central
from tenpo.shared import crypto
from tenpo.shared.protocol import Event, EventBatch

ADDRESS = "〒150-0001 東京都渋谷区神宮前1-2-3"


@pytest.fixture
def central(central_url: str, tmp_path: Path) -> Iterator[Central]:
    db = Central(central_url)
    (tmp_path / "products.csv").write_text("sku,jan,name,price,tax_class\nTSHIRT-M,,Tシャツ M,2480,standard\n")
    import_products(db, tmp_path / "products.csv")
    for store in ("S001", "S002"):
        crypto.generate_keypair(tmp_path / f"{store}.key", tmp_path / f"{store}.pub")
        add_store(db, store, crypto.public_key_pem(crypto.load_private_key(tmp_path / f"{store}.key")))
    yield db
    db.close()


def send(central: Central, store_id: str, first_seq: int, *events: tuple[str, dict[str, Any]]) -> None:
    batch = [Event(first_seq + n, uuid.uuid4().hex, kind, 1, first_seq + n, payload)
             for n, (kind, payload) in enumerate(events)]  # fmt: skip
    apply_batch(central, store_id, EventBatch(f"stream-{store_id}", batch))


def delivery(rid: str, qty: int, from_store: str = "S002") -> tuple[str, dict[str, Any]]:
    return ("delivery.requested", {"reservation_id": rid, "sku": "TSHIRT-M", "qty": qty, "from_store": from_store,
                                   "member_id": None, "customer": "山田 花子", "address": ADDRESS, "phone": None,
                                   "clerk_id": "1001", "at": time.time()})  # fmt: skip


def feed(central: Central, key: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    rows = central.all("SELECT kind, store_id, data FROM changes WHERE key = ? ORDER BY seq", (key,))
    return [(str(k), s, json.loads(d)) for k, s, d in rows]


def test_a_delivery_is_reserved_at_the_shipping_store_which_alone_gets_the_address(central: Central) -> None:
    send(central, "S002", 1, ("stock.moved", {"sku": "TSHIRT-M", "delta": 3, "reason": "received", "ref": "r1"}))
    send(central, "S001", 1, delivery("S001-D000001", 2))
    send(central, "S001", 1, delivery("S001-D000001", 2))  # the same batch again: nothing twice
    assert central.all("SELECT state, store_id, channel, pickup_store, customer FROM reservations") == [
        ("requested", "S002", "store:S001", None, "山田 花子")]  # fmt: skip
    assert central.all("SELECT ordered_at, store_id, address FROM deliveries") == [("S001", "S002", ADDRESS)]
    sent = feed(central, "S001-D000001")
    assert [(kind, store) for kind, store, _ in sent] == [
        ("delivery.upsert", "S002"), ("reservation.upsert", "S002"), ("reservation.upsert", "S001")]  # fmt: skip
    assert sent[0][2]["address"] == ADDRESS and "address" not in sent[2][2], "the address goes to the shipper only"

    # S002 confirms and ships it (a sale consuming it): the ordering store hears each step.
    send(central, "S002", 2, ("reservation.confirmed", {"reservation_id": "S001-D000001", "sku": "TSHIRT-M", "qty": 2}),
         ("reservation.picked_up", {"reservation_id": "S001-D000001", "sku": "TSHIRT-M", "qty": 2,
                                    "receipt_no": "S002-00000001"}))  # fmt: skip
    assert central.one("SELECT state, receipt_no FROM reservations") == ("picked_up", "S002-00000001")
    assert [d["state"] for kind, store, d in feed(central, "S001-D000001") if store == "S001"] == [
        "requested", "confirmed", "picked_up"]  # fmt: skip


def test_a_delivery_hq_refuses_or_cannot_trust_never_reaches_the_other_store(central: Central) -> None:
    send(central, "S002", 1, ("stock.moved", {"sku": "TSHIRT-M", "delta": 1, "reason": "received", "ref": "r1"}))
    late = delivery("S002-D000009", 1)  # not an id of the sender's
    own = delivery("S001-D000002", 1, "S001")  # from the sender itself: it sells its own stock
    send(central, "S001", 1, delivery("S001-D000001", 2), late, own)
    assert central.all("SELECT reservation_id, state, reason FROM reservations") == [
        ("S001-D000001", "rejected", "not_available: 1 available at HQ's last report")]  # fmt: skip
    assert [(kind, store) for kind, store, _ in feed(central, "S001-D000001")] == [("reservation.upsert", "S001")]
    dead = [str(r[0]) for r in central.all("SELECT reason FROM dead_letters ORDER BY id")]
    assert len(dead) == 2 and "not an id of store S001" in dead[0] and "from_store" in dead[1]


# ---------------------------------------------------------------------------- erasure

PERSON = ("配達 太郎", "〒150-0001 東京都渋谷区神宮前9-8-7 メゾン404", "090-5555-0001")  # the delivery's name, address, phone
MEMBER = {"member_id": "S001-m1", "name": "会員 一人", "phone": "+819077778888", "email": "kaiin@example.jp"}
SECRETS = ("配達", "神宮前9-8-7", "メゾン404", "090-5555-0001", "会員", "9077778888", "kaiin@", "9066665555")


def _every_row_text(central: Central) -> str:
    """Every value of every table HQ has, as text (what a dump of the database would show)."""
    if central.dialect == "sqlite":
        tables = [str(r[0]) for r in central.all("SELECT name FROM sqlite_master WHERE type = 'table'")]
    else:
        tables = [str(r[0]) for r in central.all("SELECT table_name FROM information_schema.tables"
                                                 " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]  # fmt: skip
    return "\n".join(repr(row) for table in tables for row in central.all(f'SELECT * FROM "{table}"'))


def test_erasing_the_member_blanks_their_deliveries_everywhere_at_hq_and_keeps_the_order_facts(
        central: Central, central_url: str) -> None:  # fmt: skip
    from tenpo.cloud.members.privacy import erase_member

    send(central, "S002", 1, ("stock.moved", {"sku": "TSHIRT-M", "delta": 3, "reason": "received", "ref": "r1"}))
    send(central, "S001", 1, ("member.registered", MEMBER))
    name, address, phone = PERSON
    ordered = {"reservation_id": "S001-D000001", "sku": "TSHIRT-M", "qty": 1, "from_store": "S002",
               "member_id": "S001-m1", "customer": name, "address": address, "phone": phone, "clerk_id": "1001",
               "at": time.time()}  # fmt: skip
    kept = {**ordered, "reservation_id": "S001-D000002", "member_id": None, "customer": "他人 次郎",
            "address": ADDRESS, "phone": None}  # no member: not the member's to erase
    send(central, "S001", 2, ("delivery.requested", ordered), ("delivery.requested", kept))
    send(central, "S002", 2, ("reservation.confirmed", {"reservation_id": "S001-D000001", "sku": "TSHIRT-M", "qty": 1}))
    # The member at S002's counter corrects their phone (another store's member: the contact rule allows it).
    send(central, "S002", 3, ("member.updated", {"member_id": "S001-m1", "phone": "+819066665555", "clerk_id": "2001",
                                                 "member_present": True}))  # fmt: skip
    text = _every_row_text(central)
    assert all(s in text for s in SECRETS), "HQ held the person before"

    done = erase_member(central, "S001-m1", "the customer asked")
    assert (done["reservations_erased"], done["deliveries_erased"]) == (1, 1)
    row = central.one("SELECT customer, address, phone, erased_at, store_id, ordered_at FROM deliveries"
                      " WHERE reservation_id = 'S001-D000001'")  # fmt: skip
    assert row is not None and row[:3] == ("", "", None) and row[3] is not None and row[4:] == ("S002", "S001")
    assert central.one("SELECT customer, sku, qty, state, store_id FROM reservations WHERE reservation_id ="
                       " 'S001-D000001'") == (None, "TSHIRT-M", 1, "confirmed", "S002"), "the stock facts stay"  # fmt: skip
    assert central.one("SELECT customer, address FROM deliveries WHERE reservation_id = 'S001-D000002'") == (
        "他人 次郎", ADDRESS), "a delivery with no member is not the member's"  # fmt: skip
    text = _every_row_text(central)
    assert [s for s in SECRETS if s in text] == [], "no table, feed entry or stored event keeps the person"
    records = [d for kind, _s, d in feed(central, "S001-m1") if kind == "member.upsert"]
    assert len(records) == 2 and all((r["name"], r["phone"], r["email"]) == (None, None, None) for r in records)
    (upsert,) = [d for kind, _s, d in feed(central, "S001-D000001") if kind == "delivery.upsert"]
    assert (upsert["customer"], upsert["address"], upsert["phone"], upsert["sku"]) == ("", "", None, "TSHIRT-M")
    if central.dialect == "sqlite":  # the bytes of the file and its write-ahead log, not only the tables
        path = Path(central_url.removeprefix("sqlite:///"))
        raw = path.read_bytes() + (path.with_name(path.name + "-wal").read_bytes()
                                   if path.with_name(path.name + "-wal").exists() else b"")  # fmt: skip
        assert [s for s in SECRETS if s.encode() in raw] == []
