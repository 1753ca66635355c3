"""Member and order imports at HQ (issue 9): encodings, broken rows with reasons, idempotent re-import,
Shopify's orders export and the generic JSON Lines format, points per channel rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenpo.cli import main
from tenpo.cloud.db import Central
from tenpo.cloud.members.config import load_rules
from tenpo.cloud.members.formats import Rejected, detect_encoding, iso_utc, jsonl_orders, member_rows, shopify_orders
from tenpo.cloud.members.imports import import_members, import_orders

HEADER = "source,source_id,name,kana,email,phone,postal_code,address,birth_date,card_no,rank\n"
ROWS = (
    "legacy,1,山田 太郎 様,やまだ たろう,Taro@Example.JP,090-1234-5678,〒150-0001,東京都渋谷区神宮前1-2-3,昭和55年3月1日,,gold\n"
    "legacy,2,ｻﾄｳ ﾊﾅｺ,,,０８０－１１１１－２２２２,,,,,\n"
)

# Shopify orders export: one row per line item, order fields on the first row only. Columns as in
# Shopify's "Export orders" CSV (help.shopify.com, Orders > Export: Name, Email, Financial Status,
# Paid at, ..., Lineitem quantity, Lineitem name, Lineitem price, Lineitem sku, Billing Name, ...).
SHOPIFY_HEADER = ("Name,Email,Financial Status,Paid at,Accepts Marketing,Currency,Subtotal,Total,Discount Amount,"
                  "Created at,Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Billing Name,Billing Address1,"
                  "Billing City,Billing Zip,Billing Province,Billing Country,Billing Phone,Refunded Amount,Phone\n")


def shopify(status: str = "paid", refunded: str = "") -> str:
    return SHOPIFY_HEADER + (
        f"#1001,hanako@example.jp,{status},2024-06-01 12:00:00 +0900,yes,JPY,4460,4460,0,2024-06-01 11:59:00 +0900,"
        f"2,緑茶,1480.00,A1,佐藤 花子,神宮前1-2-3,渋谷区,150-0001,JP-13,JP,090-9999-0000,{refunded},\n"
        "#1001,,,,,,,,,,1,Tシャツ,1500.00,B2,,,,,,,,,\n"
        "#1002,ken@example.jp,pending,,no,JPY,500,500,0,2024-06-02 09:00:00 +0900,1,靴下,500,C3,高橋 健,,,,,,,,\n"
    )


@pytest.fixture
def hq(central_url: str):
    db = Central(central_url)
    yield db
    db.close()


def url_of(db: Central) -> str:
    return db.url.target if db.dialect == "postgresql" else f"sqlite:///{db.url.target}"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932"])
def test_member_list_in_every_encoding_japanese_spreadsheets_write(tmp_path: Path, sqlite_url: str, encoding: str) -> None:
    path = tmp_path / "members.csv"
    path.write_bytes((HEADER + ROWS).encode(encoding))
    db = Central(sqlite_url)
    report = import_members(db, path)
    assert report.encoding == encoding
    assert report.counts()["created"] == 2
    rows = db.all("SELECT source_id, name, kana, email, phone, postal_code, birth_date, custom "
                  "FROM member_sources ORDER BY source_id")
    assert tuple(rows[0]) == ("1", "山田 太郎", "ヤマダタロウ", "Taro@example.jp", "+819012345678", "1500001", "1980-03-01",
                              '{"rank": "gold"}')  # fmt: skip
    assert tuple(rows[1][1:5]) == ("サトウ ハナコ", None, None, "+818011112222")


def test_only_unreadable_rows_are_rejected_a_bad_field_is_flagged_and_the_person_kept(tmp_path: Path, sqlite_url: str,
                                                                                      capsys) -> None:
    path = tmp_path / "members.csv"
    body = (HEADER + ROWS).encode() + (
        b"legacy,,nameless,,,,,,,,\n"
        b"legacy,4,\xff\xfe broken bytes,,,,,,,,\n"
        b"legacy,5,Bad Mail,,not-an-email,,,,,,\n"
        b"legacy,6,Bad Date,,,,,,1990-13-45,,\n"
        b"legacy,7,Too,Many,,,,,,,,x,y\n"
        b"\xff\xfe,8,broken source,,,,,,,,\n"
    )
    path.write_bytes(body)
    db = Central(sqlite_url)
    report = import_members(db, path)
    rejected = {row.line: row.reason for row in report.rows if row.status == "rejected"}
    assert rejected == {4: "source and source_id are required", 8: "2 more value(s) than columns",
                        9: "bytes that are not valid text in the file's encoding"}  # fmt: skip
    assert report.counts()["created"] == 5
    kept = {row.line: row.quality for row in report.rows if row.status == "created"}
    assert kept[5]["name"].status == "flagged" and "not valid text" in (kept[5]["name"].reason or "")
    assert (kept[6]["email"].status, kept[6]["email"].raw) == ("flagged", "not-an-email")
    assert kept[6]["name"].status == "valid", "the other fields of the record still count"
    assert (kept[7]["birth_date"].status, kept[7]["birth_date"].reason) == ("flagged", "'1990-13-45' is not a real calendar date")
    stored = json.loads(db.scalar("SELECT field_quality FROM member_sources WHERE source_id = '5'"))
    assert stored["email"] == {"status": "flagged", "raw": "not-an-email", "reason": "'not-an-email' is not an e-mail address"}
    assert db.scalar("SELECT email FROM member_sources WHERE source_id = '5'") is None, "a flagged value is not matched on"
    assert main(["cloud", "import", "members", str(path), "--db", sqlite_url]) == 1, "a rejected line needs the user"
    out, err = capsys.readouterr()
    assert "line 6: legacy:5 unchanged -> G" in out and out.count("[email flagged]") == 1, "each row says what was flagged"
    assert "line 4: legacy: rejected: source and source_id are required" in err
    assert "line 9: " in err and "rejected: bytes that are not valid text" in err


def test_reimporting_the_same_file_changes_nothing(hq: Central, tmp_path: Path) -> None:
    members = tmp_path / "members.csv"
    members.write_text(HEADER + ROWS, encoding="utf-8")
    orders = tmp_path / "orders.csv"
    orders.write_text(shopify(), encoding="utf-8")
    import_members(hq, members)
    import_orders(hq, orders)
    state = lambda: [hq.scalar(f"SELECT count(*) FROM {t}") for t in  # noqa: E731
                     ("members", "member_sources", "member_orders", "points_ledger", "changes", "member_merges")]
    before = state()
    assert import_members(hq, members).counts() == {"created": 0, "updated": 0, "merged": 0, "unchanged": 2, "rejected": 0}
    assert import_orders(hq, orders).counts()["unchanged"] == 2
    assert state() == before


def test_shopify_orders_give_history_points_and_consent(hq: Central, tmp_path: Path) -> None:
    path = tmp_path / "orders_export.csv"
    path.write_text(shopify(), encoding="utf-8")
    report = import_orders(hq, path)
    assert [(r.key, r.status, r.points) for r in report.rows] == [("web:#1001", "created", 44), ("web:#1002", "created", 0)]
    member = report.rows[0].member_id
    lines = hq.all("SELECT sku, qty, price FROM member_order_lines ORDER BY order_ref, line_no")
    assert [tuple(r) for r in lines] == [("A1", 2, 1480), ("B2", 1, 1500), ("C3", 1, 500)]
    address = hq.scalar("SELECT address FROM member_sources WHERE source_id = 'hanako@example.jp'")
    assert address == "東京都 渋谷区 神宮前1-2-3", "JP-13 is Tokyo"
    consent = json.loads(hq.scalar("SELECT consent FROM members WHERE member_id = ?", (member,)))
    assert consent == {"marketing:web": True}
    ledger = hq.one("SELECT member_id, delta, store_id, stream FROM points_ledger")
    assert tuple(ledger) == (member, 44, "channel:web", "import")

    path.write_text(shopify("partially_refunded", "1500"), encoding="utf-8")  # the T-shirt came back
    (first, second) = import_orders(hq, path).rows
    assert (first.status, first.points, second.status) == ("updated", -15, "unchanged")
    deltas = [r[0] for r in hq.all("SELECT delta FROM points_ledger ORDER BY id")]
    assert deltas == [44, -15], "a refund is a new entry, never a rewrite"


def test_channel_rules_from_toml(tmp_path: Path, sqlite_url: str) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[channels.web]\npoints_per_100_yen = 3\nearn_on = ["paid", "pending"]\n'
                     '[matching]\nmatch_threshold = 12.5\n')  # fmt: skip
    path = tmp_path / "orders.csv"
    path.write_text(shopify(), encoding="utf-8")
    config = load_rules(rules)
    assert config.match.match_threshold == 12.5
    report = import_orders(Central(sqlite_url), path, config)
    assert [r.points for r in report.rows] == [132, 15]


def test_jsonl_orders_and_cli_json_report(hq: Central, tmp_path: Path, capsys) -> None:
    path = tmp_path / "orders.jsonl"
    path.write_text(
        json.dumps({"order_id": "M-1", "channel": "marketplace", "ordered_at": "2024-06-03T10:00:00Z",
                    "customer": {"name": "小林 優", "kana": "コバヤシユウ", "phone": "090-3333-4444", "postal_code": "1000001",
                                 "address": "東京都千代田区千代田1-1"},
                    "lines": [{"jan": "4901234567894", "qty": 3, "price": 150}]}, ensure_ascii=False) + "\n"
        + json.dumps({"order_id": "L-1", "channel": "line", "customer": {"name": "小林優", "phone": "09033334444"},
                      "lines": [{"sku": "A1", "qty": 1, "price": 2000}]}, ensure_ascii=False) + "\n"
        + '{"order_id": "X", "channel": "web", "lines": []}\n',
        encoding="utf-8",
    )  # fmt: skip
    assert main(["cloud", "import", "orders", str(path), "--json", "--db", url_of(hq)]) == 1, "a row was rejected"
    report = json.loads(capsys.readouterr().out)
    rows = report["rows"]
    assert [r["status"] for r in rows] == ["created", "created", "rejected"]
    assert rows[0]["points"] == 0, "the marketplace earns nothing by default"
    assert rows[1]["member"] == "merged" and rows[1]["member_id"] == rows[0]["member_id"]
    assert rows[1]["points"] == 20
    assert rows[2]["reason"] == "lines: must be a non-empty list"


def test_a_file_of_the_wrong_kind_is_a_user_error(tmp_path: Path, sqlite_url: str, capsys) -> None:
    path = tmp_path / "products.csv"
    path.write_text("sku,name\nA1,x\n", encoding="utf-8")
    assert main(["cloud", "import", "members", str(path), "--db", sqlite_url]) == 1
    assert "missing column(s) source, source_id" in capsys.readouterr().err


def test_encoding_detection() -> None:
    assert detect_encoding("山田".encode()[:-1]) == "utf-8", "a character cut at the end of the head is fine"
    assert detect_encoding("山田".encode("cp932")) == "cp932"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=8))
def test_readers_never_raise_on_garbage_lines(lines: list[str]) -> None:
    for item in jsonl_orders(line + "\n" for line in lines):
        assert item is not None
    for item in member_rows([HEADER, *(line + "\n" for line in lines)]):
        assert item is not None
    for item in shopify_orders([SHOPIFY_HEADER, *(line + "\n" for line in lines)]):
        assert isinstance(item, Rejected) or item.lines


@pytest.mark.parametrize(("written", "stored"), [
    ("2024-03-01T10:30:00Z", "2024-03-01T10:30:00.000000Z"),  # the common form takes a shortcut: same text
    ("2024-03-01T19:30:00+09:00", "2024-03-01T10:30:00.000000Z"),
    ("2024-03-01 19:30:00 +0900", "2024-03-01T10:30:00.000000Z"),
    ("2024/03/01 19:30", "2024-03-01T10:30:00.000000Z"),  # no zone: Japan
])  # fmt: skip
def test_timestamps_are_stored_as_utc(written: str, stored: str) -> None:
    assert iso_utc(written) == stored


@pytest.mark.parametrize("written", ["2024-02-30T00:00:00Z", "2024-13-01T10:30:00Z", "2024-03-01T24:00:00Z"])
def test_an_impossible_utc_timestamp_is_refused(written: str) -> None:
    with pytest.raises(ValueError):
        iso_utc(written)
