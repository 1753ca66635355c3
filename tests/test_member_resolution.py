"""Golden members at HQ (issue 9): a store's registration meets its web-shop twin, merges are explained
and undone, points follow the person, erasure removes the person. Both central dialects."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.cloud.apply import apply_batch
from tenpo.cloud.db import Central
from tenpo.cloud.members.imports import import_members, import_orders
from tenpo.shared.protocol import Event, EventBatch
from tests.support.operators import sign_in_as

STREAM = "stream-1"


@pytest.fixture
def hq(central_url: str):
    db = Central(central_url)
    db.execute("INSERT INTO stores(store_id, public_key, registered_at) VALUES ('S001', 'unused', 0)")
    yield db
    db.close()


class Store:
    """Sends events to HQ the way the aggregator applies them (apply_batch), one seq after another."""

    def __init__(self, db: Central) -> None:
        self.db, self.seq = db, 0

    def send(self, type_: str, payload: dict) -> None:
        self.seq += 1
        event = Event(self.seq, uuid.uuid4().hex, type_, 1, self.seq, payload)
        ack = apply_batch(self.db, "S001", EventBatch(STREAM, [event]))
        assert ack.hwm == self.seq and not ack.error

    def register(self, member_id: str, **fields) -> None:
        self.send("member.registered", {"member_id": member_id, **fields})

    def points(self, member_id: str, delta: int) -> None:
        """Points earned at the counter: the entry, then the sale behind it (HQ applies no points without one)."""
        receipt_no = f"R{self.seq}"
        self.send("points.entry", {"member_id": member_id, "delta": delta, "kind": "accrual", "ref": receipt_no})
        self.send("sale.completed", {
            "receipt_no": receipt_no, "kind": "sale", "at": "2026-09-21T10:15:00+09:00", "member_id": member_id,
            "total": delta * 100, "rates": [{"rate": 10, "tax": delta * 100 // 11}], "stock_movements": [],
            "points_entries": [{"member_id": member_id, "kind": "accrue", "points": delta}], "points_earned": delta,
            "points_redeemed": 0,
        })  # fmt: skip


def write_jsonl(path: Path, *orders: dict) -> Path:
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in orders), encoding="utf-8")
    return path


def order(order_id: str, name: str, phone: str, total: int = 3000, **customer) -> dict:
    return {"order_id": order_id, "channel": "web", "ordered_at": "2024-05-01T10:00:00+09:00",
            "customer": {"name": name, "phone": phone, **customer}, "lines": [{"sku": "A1", "qty": 1, "price": total}]}


def balance(db: Central, member_id: str) -> int:
    return int(db.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (member_id,), 0))


def changes(db: Central, kind: str) -> list[dict]:
    return [json.loads(r[0]) for r in db.all("SELECT data FROM changes WHERE kind = ? ORDER BY seq", (kind,))]


def test_store_registration_meets_its_web_twin_and_points_combine(hq: Central, tmp_path: Path) -> None:
    import_orders(hq, write_jsonl(tmp_path / "o.jsonl", order("W1", "山田太郎", "090-1234-5678", kana="ヤマダタロウ")))
    (golden,) = [r[0] for r in hq.all("SELECT member_id FROM members")]
    assert balance(hq, golden) == 30  # web: 1 point per 100 yen by default

    store = Store(hq)
    store.register("S001-a1", name="山田 太郎", kana="ヤマダタロウ", phone="+819012345678")
    store.points("S001-a1", 50)

    assert [r[0] for r in hq.all("SELECT member_id FROM members")] == [golden], "one golden record"
    assert balance(hq, golden) == 80 and balance(hq, "S001-a1") == 0
    (merge,) = changes(hq, "member.merge")
    assert merge == {"winner": golden, "losers": ["S001-a1"], "merge_id": merge["merge_id"]}
    assert changes(hq, "points.balance")[-1]["balance"] == 80
    sources = sorted(tuple(r) for r in hq.all("SELECT source, source_id FROM member_sources WHERE member_id = ?", (golden,)))
    assert sources == [("store", "S001-a1"), ("web", "+819012345678")]
    explanation = hq.scalar("SELECT explanation FROM member_merges WHERE loser = 'S001-a1'")
    assert "by phone" in json.loads(explanation)["text"]


def test_web_order_after_store_registration_joins_the_store_member(hq: Central, tmp_path: Path) -> None:
    Store(hq).register("S001-b2", name="佐藤花子", phone="080-1111-2222")
    web = order("W2", "佐藤 花子", "+81 80 1111 2222", total=1000)
    del web["ordered_at"]  # imported now: newer than the registration
    import_orders(hq, write_jsonl(tmp_path / "o.jsonl", web))
    assert [r[0] for r in hq.all("SELECT member_id FROM members")] == ["S001-b2"]
    assert balance(hq, "S001-b2") == 10
    upserts = [c for c in changes(hq, "member.upsert") if c["member_id"] == "S001-b2"]
    assert upserts[-1]["name"] == "佐藤 花子", "the newest name survives"


def test_a_shared_family_phone_does_not_merge_two_people(hq: Central, tmp_path: Path) -> None:
    Store(hq).register("S001-c3", name="山田太郎", kana="ヤマダタロウ", phone="03-1234-5678")
    report = import_orders(hq, write_jsonl(tmp_path / "o.jsonl", order("W3", "山田花子", "03-1234-5678", kana="ヤマダハナコ")))
    assert report.rows[0].member == "created"
    assert hq.scalar("SELECT count(*) FROM members") == 2
    assert changes(hq, "member.merge") == []


def test_unmerge_restores_both_members_and_their_points_and_is_respected(hq: Central, tmp_path: Path, monkeypatch) -> None:
    path = write_jsonl(tmp_path / "o.jsonl", order("W4", "鈴木一郎", "090-5555-6666"))
    import_orders(hq, path)
    golden = hq.scalar("SELECT member_id FROM members")
    store = Store(hq)
    store.register("S001-d4", name="鈴木一郎", phone="09055556666")
    store.points("S001-d4", 7)
    assert balance(hq, golden) == 37

    url = hq.url.target if hq.dialect == "postgresql" else f"sqlite:///{hq.url.target}"
    assert main(["cloud", "members", "unmerge", "S001-d4", "--db", url, *sign_in_as(monkeypatch, url)]) == 0
    assert balance(hq, golden) == 30 and balance(hq, "S001-d4") == 7
    assert hq.scalar("SELECT name FROM members WHERE member_id = 'S001-d4'") == "鈴木一郎"
    (unmerge,) = changes(hq, "member.unmerge")
    assert unmerge["loser"] == "S001-d4" and unmerge["winner"] == golden
    store.send("member.updated", {"member_id": "S001-d4", "phone": "090-5555-6666", "name": "鈴木 一郎"})
    assert hq.scalar("SELECT count(*) FROM members") == 2, "the clerk's unmerge is not undone automatically"


def test_points_sent_under_a_merged_away_id_go_to_the_golden_member(hq: Central, tmp_path: Path) -> None:
    import_orders(hq, write_jsonl(tmp_path / "o.jsonl", order("W5", "高橋健", "070-1000-2000")))
    golden = hq.scalar("SELECT member_id FROM members")
    store = Store(hq)
    store.register("S001-e5", name="高橋健", phone="07010002000")
    store.points("S001-e5", 12)  # the store had not heard of the merge yet
    assert balance(hq, golden) == 42
    assert changes(hq, "points.balance")[-1] == {"member_id": golden, "balance": 42, "through": {"S001": store.seq}}


def test_manual_merge_is_explained_and_show_lists_everything(hq: Central, tmp_path: Path, capsys, monkeypatch) -> None:
    import_members(hq, _csv(tmp_path, "legacy,1,伊藤 誠,イトウマコト,,,,,,\nlegacy,2,いとう まこと,,,,,,,"))
    a, b = [r[0] for r in hq.all("SELECT member_id FROM member_sources ORDER BY source_id")]
    assert a != b, "a reading alone is not enough to merge"
    url = hq.url.target if hq.dialect == "postgresql" else f"sqlite:///{hq.url.target}"
    assert main(["cloud", "members", "merge", a, b, "--db", url, *sign_in_as(monkeypatch, url)]) == 0
    capsys.readouterr()
    assert main(["cloud", "members", "show", b, "--json", "--db", url, *sign_in_as(monkeypatch, url)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["member_id"] == a and shown["merged_from"] == b
    assert [s["source_id"] for s in shown["sources"]] == ["1", "2"]
    (merge,) = shown["merges"]
    assert merge["rule"] == "manual" and merge["explanation"].startswith(f"golden:{a} = golden:{b} by manual")
    assert hq.scalar("SELECT count(*) FROM audit_log WHERE action = 'member.view'") == 1


def test_erase_removes_personal_data_keeps_ledger_amounts_and_blocks_reimport(hq: Central, tmp_path: Path,
                                                                              monkeypatch) -> None:
    path = write_jsonl(tmp_path / "o.jsonl", order("W6", "中村愛", "090-7777-8888", email="ai@example.jp"))
    import_orders(hq, path)
    golden = hq.scalar("SELECT member_id FROM members")
    Store(hq).register("S001-f6", name="中村愛", phone="09077778888")
    url = hq.url.target if hq.dialect == "postgresql" else f"sqlite:///{hq.url.target}"
    assert main(["cloud", "members", "erase", golden, "--reason", "customer request by phone", "--db", url,
                 *sign_in_as(monkeypatch, url)]) == 0  # fmt: skip

    row = hq.one("SELECT name, phone, email, erased FROM members WHERE member_id = ?", (golden,))
    assert tuple(row) == (None, None, None, 1)
    assert hq.scalar("SELECT count(*) FROM member_sources") == 0
    assert balance(hq, golden) == 30, "ledger amounts stay"
    assert hq.scalar("SELECT source_id FROM member_orders WHERE order_id = 'W6'") is None
    erased_ids = [c["member_id"] for c in changes(hq, "member.erase")]
    assert sorted(erased_ids) == sorted([golden, "S001-f6"])
    detail = json.loads(hq.scalar("SELECT detail FROM audit_log WHERE action = 'member.erase'"))
    assert detail["reason"] == "customer request by phone"
    all_text = json.dumps(hq.all("SELECT explanation, loser_row FROM member_merges"), ensure_ascii=False)
    assert "中村" not in all_text and "7777" not in all_text

    path = write_jsonl(tmp_path / "o2.jsonl", order("W7", "中村愛", "090-7777-8888", email="ai@example.jp"))
    (row,) = import_orders(hq, path).rows
    assert row.status == "rejected" and "erased" in row.reason


def _csv(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "members.csv"
    path.write_text("source,source_id,name,kana,email,phone,postal_code,address,birth_date,card_no\n" + body + "\n",
                    encoding="utf-8")
    return path


def test_export_jsonl_and_csv(hq: Central, tmp_path: Path, capsys, monkeypatch) -> None:
    import_members(hq, _csv(tmp_path, "legacy,1,木村拓也,,taku@example.jp,,,,,\nlegacy,2,木村拓也,,taku@example.jp,,,,,"))
    Store(hq).register("S001-g7", name="小林優", phone="09011112222")
    url = hq.url.target if hq.dialect == "postgresql" else f"sqlite:///{hq.url.target}"
    assert main(["cloud", "members", "export", "--format", "jsonl", "--db", url, *sign_in_as(monkeypatch, url)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {r["name"]: r for r in records}
    assert by_name["木村拓也"]["sources"] == [{"source": "legacy", "source_id": "1"}, {"source": "legacy", "source_id": "2"}]
    assert by_name["小林優"]["sources"] == [{"source": "store", "source_id": "S001-g7"}]
    assert all({"member_id", "sources"} <= set(r) for r in records)
    assert main(["cloud", "members", "export", "--format", "csv", "--db", url, *sign_in_as(monkeypatch, url)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(",")[0] == "member_id" and lines[0].endswith("sources")
    assert any(line.endswith("legacy:1;legacy:2") for line in lines[1:])
