"""A merged member's whole history at HQ (issue 9): a merge re-points the person's store sales, visits
and coupons (every table with a member_id, found in the schema), `members show` lists them with the
web orders under the golden id, and an unmerge moves exactly those rows back. Both central dialects."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.db import Central
from tenpo.cloud.members.config import MembersConfig
from tenpo.cloud.members.imports import import_orders
from tenpo.cloud.members.resolve import manual_merge, unmerge
from tenpo.cloud.members.store import Pending, member_tables, publish
from tenpo.shared.protocol import Event, EventBatch
from tests.support.operators import sign_in_as

ARRIVED = 1_790_000_000.0  # 2026-09-21, inside the plausible window HQ accepts


@pytest.fixture
def hq(central_url: str):
    db = Central(central_url)
    db.execute("INSERT INTO stores(store_id, name, public_key, registered_at) VALUES ('S001', '渋谷店', 'unused', 0)")
    yield db
    db.close()


class Store:
    """Sends events to HQ the way the aggregator applies them (apply_batch), one seq after another."""

    def __init__(self, db: Central) -> None:
        self.db, self.seq = db, 0

    def send(self, type_: str, payload: dict) -> None:
        self.seq += 1
        event = Event(self.seq, uuid.uuid4().hex, type_, 1, self.seq, payload)
        ack = apply_batch(self.db, "S001", EventBatch("stream-1", [event]))
        assert ack.hwm == self.seq and not ack.error

    def sale(self, member_id: str, receipt_no: str, total: int, points: int) -> None:
        """A counter sale that earns points: the ledger entry, then the sale, as the store writes them."""
        self.send("points.entry", {"member_id": member_id, "delta": points, "kind": "accrual", "ref": receipt_no})
        self.send("sale.completed", {
            "receipt_no": receipt_no, "kind": "sale", "at": "2026-09-21T10:15:00+09:00", "member_id": member_id,
            "total": total, "rates": [{"rate": 10, "tax": total // 11}], "stock_movements": [],
            "points_entries": [{"member_id": member_id, "delta": points}], "points_earned": points,
            "points_redeemed": 0,
        })  # fmt: skip

    def visit(self, member_id: str, visit_id: str, dwell_s: float) -> None:
        self.send("visit.arrived", {"visit_id": visit_id, "member_id": member_id, "arrived_at": ARRIVED})
        self.send("coupon.triggered", {"coupon_id": f"c-{visit_id}", "member_id": member_id, "rule": "welcome-back",
                                       "visit_id": visit_id, "triggered_at": ARRIVED + 5})  # fmt: skip
        self.send("visit.left", {"visit_id": visit_id, "member_id": member_id, "arrived_at": ARRIVED,
                                 "left_at": ARRIVED + dwell_s, "dwell_s": dwell_s})  # fmt: skip


def web_order(tmp_path: Path, order_id: str, **customer) -> Path:
    path = tmp_path / f"{order_id}.jsonl"
    order = {"order_id": order_id, "channel": "web", "ordered_at": "2026-08-01T10:00:00+09:00", "customer": customer,
             "lines": [{"sku": "A1", "qty": 1, "price": 3000}]}  # 30 points at the default web rate
    path.write_text(json.dumps(order, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def url_of(db: Central) -> str:
    return db.url.target if db.dialect == "postgresql" else f"sqlite:///{db.url.target}"


def show(db: Central, member_id: str, capsys) -> dict:
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as signed:  # a view of personal data needs a signed-in operator (issue 14)
        flags = sign_in_as(signed, url_of(db), "watcher", "viewer")
        assert main(["cloud", "members", "show", member_id, "--json", "--db", url_of(db), *flags]) == 0
    return json.loads(capsys.readouterr().out)


def balance(db: Central, member_id: str) -> int:
    return int(db.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (member_id,), 0))


def owners(db: Central) -> dict[str, str]:
    """Who each history row belongs to, table by table."""
    rows = db.all("SELECT 'sale ' || receipt_no, member_id FROM sales UNION ALL SELECT 'visit ' || visit_id, member_id"
                  " FROM visits UNION ALL SELECT 'coupon ' || coupon_id, member_id FROM coupons")  # fmt: skip
    return dict(rows)


def test_merge_with_the_web_twin_shows_sale_visit_and_order_and_unmerge_moves_them_back(hq: Central, tmp_path: Path,
                                                                                       capsys, monkeypatch) -> None:
    store = Store(hq)
    store.send("member.registered", {"member_id": "S001-a1", "name": "山田 太郎", "phone": "+819012345678"})
    store.sale("S001-a1", "R0001", 1100, 11)
    store.visit("S001-a1", "v1", 720.0)
    # The web shop knows the person by name and e-mail only: not enough to join them automatically.
    import_orders(hq, web_order(tmp_path, "W1", name="山田太郎", email="taro@example.jp"))
    web = hq.scalar("SELECT member_id FROM members WHERE member_id <> 'S001-a1'")
    assert web.startswith("G") and balance(hq, web) == 30 and balance(hq, "S001-a1") == 11

    assert main(["cloud", "members", "merge", web, "S001-a1", "--db", url_of(hq), *sign_in_as(monkeypatch, url_of(hq))]) == 0
    shown = show(hq, web, capsys)
    assert [o["order_id"] for o in shown["orders"]] == ["W1"]
    (sale,) = shown["sales"]
    assert (sale["receipt_no"], sale["store_id"], sale["at"], sale["total"], sale["points_earned"]) == (
        "R0001", "S001", "2026-09-21T10:15:00+09:00", 1100, 11)
    (visit,) = shown["visits"]
    assert (visit["store_id"], visit["store_name"], visit["arrived_at"], visit["dwell_s"], visit["coupons"]) == (
        "S001", "渋谷店", ARRIVED, 720.0, ["welcome-back"])
    assert set(owners(hq).values()) == {web}, "the rows themselves moved, not only the view"
    assert shown["points"] == 41 and balance(hq, "S001-a1") == 0
    assert show(hq, "S001-a1", capsys)["member_id"] == web, "the old id still finds the person"

    capsys.readouterr()
    assert main(["cloud", "members", "show", web, "--db", url_of(hq), *sign_in_as(monkeypatch, url_of(hq))]) == 0
    text = capsys.readouterr().out
    assert "store sales (1):\n  S001 R0001  2026-09-21T10:15:00+09:00  sale  ¥1,100  +11 pt" in text
    assert "visits (1):\n  S001 渋谷店" in text and "12 min" in text

    assert main(["cloud", "members", "unmerge", "S001-a1", "--db", url_of(hq), *sign_in_as(monkeypatch, url_of(hq))]) == 0
    assert set(owners(hq).values()) == {"S001-a1"}
    back = show(hq, "S001-a1", capsys)
    assert [s["receipt_no"] for s in back["sales"]] == ["R0001"] and [v["visit_id"] for v in back["visits"]] == ["v1"]
    assert back["orders"] == [] and back["points"] == 11
    golden = show(hq, web, capsys)
    assert golden["sales"] == [] and golden["visits"] == [] and [o["order_id"] for o in golden["orders"]] == ["W1"]
    assert golden["points"] == 30


def test_history_arriving_under_the_old_id_joins_the_golden_member_and_leaves_with_it(hq: Central,
                                                                                     tmp_path: Path) -> None:
    import_orders(hq, web_order(tmp_path, "W2", name="高橋健", phone="070-1000-2000"))
    golden = hq.scalar("SELECT member_id FROM members")
    store = Store(hq)
    store.send("member.registered", {"member_id": "S001-b2", "name": "高橋 健", "phone": "+817010002000"})
    assert hq.scalar("SELECT count(*) FROM members") == 1, "registration merged into the web member"
    # The store had not heard of the merge yet: its sale and visit still carry its provisional id.
    store.sale("S001-b2", "R0002", 2200, 22)
    store.visit("S001-b2", "v2", 60.0)
    assert set(owners(hq).values()) == {golden}
    assert balance(hq, golden) == 52

    config, now, pending = MembersConfig(), 1_790_000_100.0, Pending()
    with hq.transaction():
        unmerge(hq, "S001-b2", config, now, pending)
        publish(hq, pending, now)
    assert set(owners(hq).values()) == {"S001-b2"}
    assert balance(hq, golden) == 30 and balance(hq, "S001-b2") == 22


def test_a_member_table_added_or_altered_between_merges_is_moved_by_the_next(hq: Central) -> None:
    # An import merges thousands of times: what member_tables found is kept until the schema changes.
    before = {t.name: t.key for t in member_tables(hq)}
    hq.execute("CREATE TABLE gift_cards (card_id TEXT PRIMARY KEY, member_id TEXT)")
    hq.execute("CREATE TABLE wish_lists (list_id TEXT PRIMARY KEY, note TEXT)")
    assert {t.name: t.key for t in member_tables(hq)} == {**before, "gift_cards": ("card_id",)}
    hq.execute("ALTER TABLE wish_lists ADD COLUMN member_id TEXT")
    assert {t.name: t.key for t in member_tables(hq)} == {**before, "gift_cards": ("card_id",), "wish_lists": ("list_id",)}


def test_tables_found_in_the_schema_move_by_primary_key_and_keyless_ones_are_skipped(hq: Central, caplog) -> None:
    # Tables another area might add: a composite primary key, and one without any key.
    hq.execute("CREATE TABLE loyalty_stamps (store_id TEXT NOT NULL, card_no INTEGER NOT NULL, member_id TEXT,"
               " PRIMARY KEY (store_id, card_no))")  # fmt: skip
    hq.execute("CREATE TABLE free_notes (member_id TEXT, note TEXT)")
    with caplog.at_level(logging.WARNING, logger="tenpo.cloud.members.store"):
        found = {t.name: t.key for t in member_tables(hq)}
    assert found == {"coupons": ("store_id", "coupon_id"), "loyalty_stamps": ("store_id", "card_no"),
                     "sales": ("store_id", "stream", "receipt_no"), "visits": ("store_id", "visit_id"),
                     "zone_stays": ("store_id", "stay_id"), "reservations": ("reservation_id",),
                     "points_holds": ("hold_id",), "loyalty_rank_log": ("id",),
                     "loyalty_points_meta": ("store_id", "stream", "store_seq")}  # fmt: skip
    assert "free_notes has member_id but no primary key" in caplog.text

    store = Store(hq)
    for member_id in ("S001-c3", "S001-d4"):
        store.send("member.registered", {"member_id": member_id, "name": f"客 {member_id[-2:]}"})
    rows = [("S001", 1, "S001-d4"), ("S001", 2, "S001-d4"), ("S002", 1, "S001-c3")]
    hq.executemany("INSERT INTO loyalty_stamps(store_id, card_no, member_id) VALUES (?, ?, ?)", rows)
    hq.execute("INSERT INTO free_notes(member_id, note) VALUES ('S001-d4', 'likes green tea')")

    config, now, pending = MembersConfig(), 1_790_000_100.0, Pending()
    with hq.transaction():
        manual_merge(hq, "S001-c3", "S001-d4", config, now, pending)
    stamps = "SELECT store_id, card_no, member_id FROM loyalty_stamps ORDER BY store_id, card_no"
    assert [tuple(r) for r in hq.all(stamps)] == [("S001", 1, "S001-c3"), ("S001", 2, "S001-c3"), ("S002", 1, "S001-c3")]
    assert hq.scalar("SELECT member_id FROM free_notes") == "S001-d4", "left alone, as the warning said"
    with hq.transaction():
        unmerge(hq, "S001-d4", config, now, pending)
    assert [tuple(r) for r in hq.all(stamps)] == rows


def test_erasure_takes_the_visits_of_every_merged_id_and_keeps_the_sales_amounts(hq: Central, capsys, monkeypatch) -> None:
    store = Store(hq)
    member_id = "S001-erase1"
    store.send("member.registered", {"member_id": member_id, "name": "消去 希望", "phone": "+819055556666"})
    store.sale(member_id, "S001-00000009", 2000, 20)
    store.visit(member_id, "v-erase", 90.0)
    assert main(["cloud", "members", "erase", member_id, "--reason", "request at the counter", "--db", url_of(hq),
                 *sign_in_as(monkeypatch, url_of(hq))]) == 0  # fmt: skip
    for table in ("visits", "coupons"):
        assert hq.scalar(f"SELECT count(*) FROM {table} WHERE member_id = ?", (member_id,)) == 0
    assert hq.scalar("SELECT total FROM sales WHERE receipt_no = 'S001-00000009'") == 2000, "amounts stay for the books"
    assert hq.scalar("SELECT name FROM members WHERE member_id = ?", (member_id,)) is None
