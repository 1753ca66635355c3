"""Long fields are bounded where they come in (issue 14): the wire catalogue, member and order
imports (customer data: the record is kept, the field flagged with its raw value kept up to a cap),
the store's own registration, the store and beacon config files, and the clerk terminal's inputs.
Every test feeds real oversized bytes."""

from __future__ import annotations

from pathlib import Path

import msgspec.inspect as mi
import pytest
from textual.widgets import Input

from tenpo.cloud.db import Central
from tenpo.cloud.members.imports import import_members, import_orders
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.ble.registry import load_registry
from tenpo.edge.config import load_config
from tenpo.sandbox import write_store_config
from tenpo.shared import events
from tenpo.shared.changes import CHANGE_KINDS
from tenpo.shared.errors import ConfigError, UserError
from tenpo.shared.field_bounds import MAX_FIELD_CHARS, RAW_KEPT_CHARS
from tests.test_clerk_support import make_app, make_store, settle
from tests.test_member_imports import SHOPIFY_HEADER

LONG = 5000


def unbounded_strings(t: mi.Type, path: str, seen: frozenset[type]) -> list[str]:
    if isinstance(t, mi.StrType):
        return [] if t.max_length is not None or t.pattern is not None else [path]
    if isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        return unbounded_strings(t.item_type, f"{path}[]", seen)
    if isinstance(t, mi.DictType):
        return unbounded_strings(t.key_type, f"{path}{{key}}", seen) + unbounded_strings(t.value_type, f"{path}{{}}", seen)
    if isinstance(t, mi.UnionType):
        return [p for x in t.types for p in unbounded_strings(x, path, seen)]
    if isinstance(t, mi.StructType) and t.cls not in seen:
        return [p for f in t.fields for p in unbounded_strings(f.type, f"{path}.{f.name}", seen | {t.cls})]
    return []


def test_every_text_field_of_the_wire_catalogue_has_a_maximum_length() -> None:
    structs: dict[str, type] = {name: obj for name, obj in vars(events).items()
                                if isinstance(obj, type) and issubclass(obj, events.msgspec.Struct)}  # fmt: skip
    structs.update(CHANGE_KINDS)
    found = [p for name, cls in structs.items() for p in unbounded_strings(mi.type_info(cls), name, frozenset())]
    assert found == [], "strings a store or HQ can send without a length limit"
    for bounded in (events.Field, events.Word, events.Label, events.Text, events.Id):
        with pytest.raises(events.msgspec.ValidationError):
            events.msgspec.convert("x" * 100_000, bounded)


def test_a_member_list_with_oversized_fields_keeps_every_person_and_flags_the_fields(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "members.csv"
    path.write_text(
        "source,source_id,name,kana,email,phone,rank\n"
        "pos,1,佐藤 花子,サトウハナコ,hanako@example.jp,090-1234-5678,gold\n"
        f"pos,2,高橋 健,{'タ' * 200_000},ken@example.jp,090-1234-5679,silver\n"  # larger than csv's 128 KiB field limit
        f"pos,3,伊藤 美咲,イトウミサキ,{'x' * LONG}@example.jp,090-1234-5670,{'g' * LONG}\n"
        f"pos,{'9' * 500},山田 太郎,ヤマダタロウ,taro@example.jp,090-1234-5671,\n",
        encoding="utf-8",
    )
    db = Central(sqlite_url)
    report = import_members(db, path)  # today: the 5000-character e-mail aborts the whole import
    outcome = {r.key: r for r in report.rows}
    assert [outcome[f"pos:{i}"].status for i in (1, 2, 3)] == ["created"] * 3, "every person is kept"
    kana = outcome["pos:2"].quality["kana"]
    assert kana.status == "flagged" and "200000 characters" in (kana.reason or "") and len(kana.raw or "") == RAW_KEPT_CHARS
    email = outcome["pos:3"].quality["email"]
    assert email.status == "flagged" and (email.raw or "").startswith("xxx") and len(email.raw or "") == RAW_KEPT_CHARS
    rejected = [r for r in report.rows if r.status == "rejected"]
    assert len(rejected) == 1 and "500 characters" in (rejected[0].reason or "") and len(rejected[0].key) <= 128
    stored = db.all("SELECT name, kana, email, custom FROM member_sources ORDER BY source_id")
    assert all(len(v) <= MAX_FIELD_CHARS for row in stored for v in row[:3] if v), "nothing over-long is used"
    assert all("ggg" not in (row[3] or "") for row in stored), "an over-long custom value is flagged, not used"
    feed = "".join(d for (d,) in db.all("SELECT data FROM changes"))
    assert "タタタタ" * 100 not in feed and "x" * 300 not in feed

    header_path = tmp_path / "bad-header.csv"
    header_path.write_text(f"source,source_id,name,{'c' * 100}\npos,9,佐藤,x\n", encoding="utf-8")
    with pytest.raises(UserError, match="100 characters, at most 64"):
        import_members(db, header_path)
    db.close()


def test_an_order_file_with_oversized_fields(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "orders.csv"
    long_email = "y" * LONG + "@example.jp"
    path.write_text(
        SHOPIFY_HEADER
        + f"#2001,{long_email},paid,2024-06-01 12:00:00 +0900,yes,JPY,500,500,0,,1,緑茶,500,A1,佐藤 花子,,,,,,090-9999-0000,,\n"
        + f"#{'8' * 400},ken@example.jp,paid,2024-06-02 09:00:00 +0900,no,JPY,500,500,0,,1,靴下,500,C3,高橋 健,,,,,,,,\n",
        encoding="utf-8",
    )
    db = Central(sqlite_url)
    first, second = import_orders(db, path).rows
    assert first.status == "created" and first.quality["email"].status == "flagged"
    assert len(first.quality["email"].raw or "") == RAW_KEPT_CHARS
    assert second.status == "rejected" and "order id: 401 characters" in (second.reason or "")
    db.close()


def test_the_store_refuses_an_oversized_registration_clearly(tmp_path: Path) -> None:
    db = edge_db.connect(tmp_path / "S001.db")
    for field in ("name", "kana", "email", "card_no"):
        value = ("佐" if field in ("name", "kana") else "a") * 300 + ("@example.jp" if field == "email" else "")
        fields = {"name": "佐藤 花子", field: value}
        with pytest.raises(UserError, match=rf"{field}: 3\d\d characters, at most 256"):
            replica.register_member(db, "S001", **fields)
    assert db.conn.execute("SELECT count(*) FROM members").fetchone()[0] == 0
    assert db.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0, "nothing half-written"


def test_config_files_refuse_oversized_values_naming_the_field(tmp_path: Path) -> None:
    config = write_store_config(tmp_path, "S001", "mqtt://127.0.0.1:1883")
    config.write_text(config.read_text().replace('name = "Store S001"', f'name = "{"店" * LONG}"'))
    with pytest.raises(ConfigError) as refused:
        load_config(str(config))
    assert "store.name" in str(refused.value) and "5000 characters, at most 4096" in str(refused.value)
    assert len(str(refused.value)) < 500, "the error does not repeat the value"

    registry = tmp_path / "beacons.toml"
    registry.write_text(f'[member_app]\nibeacon_uuid = "7e4b1c2a-9d3f-4a61-b8e5-0c2f6d9a4e17"\n'
                        f'[presence]\nscanner_zone = "counter"\n[[zones]]\nname = "{"z" * 200}"\n')  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        load_registry(registry)
    assert "200 characters, at most 128" in str(refused.value) and "z" * 100 not in str(refused.value)


async def test_clerk_inputs_take_at_most_their_bound(tmp_path: Path) -> None:
    app = make_app(make_store(tmp_path / "S001"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        inputs = list(app.screen.query(Input))
        assert inputs and all(0 < i.max_length <= MAX_FIELD_CHARS for i in inputs)
        clerk_id = app.screen.query_one("#clerk-id", Input)
        clerk_id.focus()
        clerk_id.insert_text_at_cursor("9" * 100_000)  # a paste of 100,000 characters: refused whole (a bell)
        await settle(pilot)
        assert clerk_id.value == ""
        await pilot.press(*"12345")
        clerk_id.insert_text_at_cursor("9" * (clerk_id.max_length - 5))
        await pilot.press("9", "9", "9")  # typing on at the bound: refused key by key
        await settle(pilot)
        assert clerk_id.value == "12345" + "9" * (clerk_id.max_length - 5)
