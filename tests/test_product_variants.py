"""Product variants (issue 18 §7): a style in colours and sizes, imported at HQ, carried to every store."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tenpo.cloud.admin import import_products
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge import replica
from tenpo.edge.config import load_config
from tenpo.sandbox import aggregator_process, provision_store, store_process, wait_until
from tenpo.shared.variants import VariantError, clean_variant, size_key, variant_label

HEADER = "sku,jan,name,price,tax_class,style,colour,size\n"
SHIRTS = HEADER + "".join(
    f"TS-{code}-{size},,オックスフォードシャツ,4990,standard,TS100,{colour},{size}\n"
    for code, colour in (("NV", "ネイビー"), ("WH", "ホワイト"))
    for size in ("S", "M", "L")
) + "TEA,,緑茶,150,reduced,,,\n"


# ---------------------------------------------------------------------------- pure rules


def test_sizes_sort_as_on_a_shelf_whatever_order_they_come_in() -> None:
    shelf = ["XS", "S", "M", "L", "XL", "XXL", "22.5", "23", "23.5cm", "26", "キッズ", "FREE"]
    shuffled = shelf[:]
    random.Random(18).shuffle(shuffled)
    assert sorted(shuffled, key=size_key) == shelf
    # Japanese tags: SS is the size below S, LL and 3L above L.
    assert sorted(["LL", "M", "SS", "3L", "S", "L"], key=size_key) == ["SS", "S", "M", "L", "LL", "3L"]
    assert size_key("ｍ") == size_key("M")  # 全角 typed at the till


def test_variant_fields_are_normalised_or_refused_with_the_field_named() -> None:
    assert clean_variant(" TS100 ", "ネイビー", "ｍ") == clean_variant("TS100", "ネイビー", "M")
    assert clean_variant("", "", "").style is None
    with pytest.raises(VariantError, match="colour and size need a style"):
        clean_variant(None, "red", "M")
    with pytest.raises(VariantError, match="style"):
        clean_variant("TS 100;DROP", None, None)
    with pytest.raises(VariantError, match="size is longer than 32"):
        clean_variant("TS100", None, "M" * 33)
    with pytest.raises(VariantError, match="colour holds control characters"):
        clean_variant("TS100", "red\x1b[2J", None)
    assert variant_label("ネイビー", "M") == "ネイビー · M"
    assert variant_label(None, "M") == "M"


# ---------------------------------------------------------------------------- import at HQ


def test_import_keeps_variants_rejects_bad_rows_by_line_and_sends_only_real_changes(tmp_path: Path, sqlite_url: str) -> None:
    central = Central(sqlite_url)
    path = tmp_path / "products.csv"
    path.write_text(SHIRTS + "BAD,,靴下,500,standard,,red,M\nLONG,,靴下,500,standard,SK1,," + "9" * 40
                    + "\n靴下-M,,靴下,500,standard,SK1,,M\n")  # fmt: skip
    report = import_products(central, path)
    assert (report.created, [line for line, _ in report.rejected]) == (7, [9, 10, 11])
    assert "need a style" in report.rejected[0][1] and "size is longer" in report.rejected[1][1]
    assert "letters, digits" in report.rejected[2][1]
    assert central.all("SELECT sku, colour, size FROM products WHERE style = 'TS100' ORDER BY sku")[:2] == [
        ("TS-NV-L", "ネイビー", "L"), ("TS-NV-M", "ネイビー", "M")]  # fmt: skip
    changes = central.scalar("SELECT count(*) FROM changes WHERE kind = 'product.upsert'")
    assert import_products(central, path).unchanged == 7
    assert central.scalar("SELECT count(*) FROM changes WHERE kind = 'product.upsert'") == changes
    path.write_text(SHIRTS.replace("TS100,ホワイト,L", "TS100,ホワイト,LL"))
    assert import_products(central, path).updated == 1


def test_variants_reach_a_new_store_by_snapshot_and_later_changes_by_the_feed(tmp_path: Path, broker,
                                                                             sqlite_url: str) -> None:  # fmt: skip
    central = Central(sqlite_url)
    products = tmp_path / "products.csv"
    products.write_text(SHIRTS)
    import_products(central, products)
    config_path = provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url)
    db = edge_db.connect(load_config(str(config_path)).database)
    aggregator = aggregator_process(sqlite_url, broker.url, tmp_path / "agg.log").start()
    agent = store_process(config_path).start()
    try:
        wait_until(lambda: db.conn.execute("SELECT count(*) FROM products").fetchone()[0] == 7, 30, what="snapshot")
        assert db.conn.execute("SELECT style, colour, size FROM products WHERE sku = 'TS-WH-S'").fetchone() == (
            "TS100", "ホワイト", "S")  # fmt: skip
        assert db.conn.execute("SELECT style, colour, size FROM products WHERE sku = 'TEA'").fetchone() == (None, None, None)
        products.write_text(SHIRTS.replace("TS100,ホワイト,S", "TS100,オフホワイト,S"))
        import_products(central, products)
        wait_until(lambda: db.conn.execute("SELECT colour FROM products WHERE sku = 'TS-WH-S'").fetchone()[0]
                   == "オフホワイト", 30, what="the renamed colour through the feed")  # fmt: skip
    finally:
        assert agent.terminate() == 0
        aggregator.terminate()


# ---------------------------------------------------------------------------- the clerk's stock screen


async def test_the_clerk_finds_the_missing_size_at_another_store_and_holds_it_there(tmp_path: Path) -> None:
    from tenpo.edge.clerk.view import FormScreen
    from tenpo.edge.feed import _upsert_products
    from tenpo.shared.changes import ProductUpsert
    from tests.test_clerk_support import CLERK, make_app, make_store, settle, sign_in, type_text

    config = make_store(tmp_path / "S001")
    db = edge_db.connect(config.database)
    sizes = ("L", "S", "M")  # as a spreadsheet may list them
    shirts = [ProductUpsert(sku=f"TS-NV-{size}", name="オックスフォードシャツ", price=4990, tax_class="standard",
                            style="TS100", colour="ネイビー", size=size, version=100 + n) for n, size in enumerate(sizes)]
    with edge_db.transaction(db) as conn:
        _upsert_products(conn, "S001", shirts, None)
        conn.execute("INSERT INTO remote_stock(store_id, sku, on_hand, as_of, version) VALUES ('S002', 'TS-NV-M', 3, ?, 1)",
                     (time.time() - 120,))  # fmt: skip
    replica.adjust_stock(db, "TS-NV-S", 4, "count")
    db.conn.close()

    app = make_app(config)
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot, CLERK)
        await pilot.press("f5")
        await type_text(pilot, "TS-NV-S")  # the customer holds an S and asks for an M
        table = app.screen.query_one("#stock-rows")
        rows = [[str(getattr(c, "plain", c)) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert [(r[0], r[1]) for r in rows] == [("S001", "TS-NV-S"), ("S001", "TS-NV-M"), ("S002", "TS-NV-M"),
                                                 ("S001", "TS-NV-L")]  # shelf order, every size of the style
        assert rows[2][2].startswith("ネイビー · M") and rows[2][3] == "3" and rows[1][3] == "0"
        await pilot.press("down", "down", "down", "f8")  # S002's M: hold it there for pickup here
        await settle(pilot)
        assert isinstance(app.screen, FormScreen) and "TS-NV-M" in str(app.screen.note) and "S002" in str(app.screen.note)
