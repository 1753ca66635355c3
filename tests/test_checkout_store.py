"""Checkout on the store replica: one transaction per sale, receipt numbers that survive kill -9,
refunds once only, and the `tenpo edge checkout` / `tenpo edge refund` commands."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.edge import db as edge_db
from tenpo.edge.checkout import Payment, Scan
from tenpo.edge.checkout.errors import CheckoutRefused, NotRefundable, RedemptionOverCap, SerialAlreadySold
from tenpo.edge.checkout.store import SaleOrder, commit_sale, find_member_id, load_sale, refund_sale
from tenpo.edge.config import load_config
from tenpo.edge.feed import _points_balances, _upsert_members, _upsert_products
from tenpo.edge.outbox import read_counter
from tenpo.sandbox import write_store_config
from tenpo.shared.epc import encode_sgtin96
from tests.support.clerks import AS_CLERK, AS_MANAGER, add_store_clerks, pins_on_stdin

TEA, ONIGIRI = "4901085089583", "4901234567894"
PRODUCTS = [
    {"sku": "TEA-500", "jan": TEA, "name": "緑茶 500ml", "price": 150, "tax_class": "reduced", "version": 1},
    {"sku": "ONIGIRI-S", "jan": ONIGIRI, "name": "おにぎり 鮭", "price": 160, "tax_class": "reduced", "version": 1},
    {"sku": "TSHIRT-M", "jan": "4560000000012", "name": "Tシャツ M 白", "price": 1980, "tax_class": "standard", "version": 1},
    {"sku": "UMBRELLA", "jan": "4560000000029", "name": "傘 65cm", "price": 1200, "tax_class": "standard", "version": 1},
    {"sku": "SOAP", "jan": "4901234500013", "name": "石けん", "price": 98, "tax_class": "standard", "version": 1},
]
MEMBER = "M-0001"


def seed(db, points: int = 5000) -> None:
    with edge_db.transaction(db) as conn:
        _upsert_products(conn, "S001", PRODUCTS, None)
        _upsert_members(conn, "S001", [{"member_id": MEMBER, "name": "佐藤 花子", "phone": "+819012345678",
                                        "card_no": "C100", "points": points, "version": 1}], None)  # fmt: skip


@pytest.fixture
def store(tmp_path: Path):
    config_path = write_store_config(tmp_path / "S001", "S001", "mqtt://127.0.0.1:1")
    config = load_config(str(config_path))
    db = edge_db.connect(config.database)
    seed(db)
    yield config_path, config, db
    db.conn.close()


def counts(db) -> dict[str, int]:
    return {
        table: db.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("sales", "sale_lines", "stock_ledger", "points_ledger", "outbox", "sold_serials", "counters")
    }


def test_a_sale_writes_everything_in_one_transaction(store) -> None:
    _path, config, db = store
    order = SaleOrder((Scan(TEA), Scan(TEA), Scan(ONIGIRI)), member_id=MEMBER, redeem_points=100,
                      payments=(Payment("cash", 1000),))  # fmt: skip
    sale = commit_sale(db, config, order)
    assert sale.receipt_no == "S001-00000001"
    assert (sale.total, sale.points_redeemed, sale.change) == (460, 100, 640)
    conn = db.conn
    stock = conn.execute("SELECT sku, delta, reason, ref FROM stock_ledger ORDER BY id").fetchall()
    assert stock == [("TEA-500", -2, "sale", sale.receipt_no), ("ONIGIRI-S", -1, "sale", sale.receipt_no)]
    points = conn.execute("SELECT member_id, delta, kind, ref FROM points_ledger ORDER BY id").fetchall()
    assert points == [(MEMBER, -100, "redemption", sale.receipt_no), (MEMBER, 3, "accrual", sale.receipt_no)]
    events = conn.execute("SELECT seq, type, payload FROM outbox ORDER BY seq").fetchall()
    assert [e[1] for e in events] == ["stock.moved", "stock.moved", "points.entry", "points.entry", "sale.completed"]
    # Each ledger row points at the event that reports it, and the sale event carries the whole sale.
    assert [r[0] for r in conn.execute("SELECT store_seq FROM stock_ledger ORDER BY id")] == [1, 2]
    assert [r[0] for r in conn.execute("SELECT store_seq FROM points_ledger ORDER BY id")] == [3, 4]
    assert json.loads(events[-1][2])["receipt_no"] == sale.receipt_no
    stored = load_sale(db, "S001", "1")
    assert stored is not None and stored.sale == sale and "S001-00000001" in stored.receipt


def test_refused_sales_write_nothing_and_use_no_receipt_number(store) -> None:
    _path, config, db = store
    before = counts(db)
    refusals = [
        SaleOrder((Scan(TEA),), payments=(Payment("cash", 100),)),  # short
        SaleOrder((Scan("4901085089580"),), payments=(Payment("cash", 1000),)),  # bad check digit
        SaleOrder((Scan(TEA),), member_id=MEMBER, redeem_points=3001, payments=(Payment("cash", 5000),)),
        SaleOrder((Scan(TEA),), member_id="nobody", payments=(Payment("cash", 1000),)),
    ]
    for order in refusals:
        with pytest.raises(CheckoutRefused):
            commit_sale(db, config, order)
    assert counts(db) == before
    assert commit_sale(db, config, SaleOrder((Scan(TEA),), payments=(Payment("cash", 150),))).receipt_no == "S001-00000001"


def test_offline_redemption_cap_spans_sales_until_hq_confirms(store) -> None:
    _path, config, db = store  # defaults: 3,000 per sale, 5,000 per member per offline period
    with edge_db.transaction(db) as conn:
        _points_balances(conn, "S001", [{"member_id": MEMBER, "balance": 20000, "through": {}}], None)
    pay = (Payment("cash", 10000),)
    commit_sale(db, config, SaleOrder((Scan("sku:TSHIRT-M"), Scan("sku:UMBRELLA")), MEMBER, 3000, pay))
    with pytest.raises(RedemptionOverCap, match="already redeemed 3,000 of the 5,000"):
        commit_sale(db, config, SaleOrder((Scan("sku:TSHIRT-M"), Scan("sku:UMBRELLA")), MEMBER, 2500, pay))
    # HQ's balance arrives and includes our entries: a new offline period starts.
    last = read_counter(db.conn, "outbox")
    with edge_db.transaction(db) as conn:
        _points_balances(conn, "S001", [{"member_id": MEMBER, "balance": 2031, "through": {"S001": last}}], None)
    sale = commit_sale(db, config, SaleOrder((Scan("sku:TSHIRT-M"),), MEMBER, 1980, pay))
    assert sale.points_balance_after == 2031 - 1980


def test_refund_reverses_once_and_a_second_refund_is_refused(store) -> None:
    _path, config, db = store
    epc = encode_sgtin96("04560000000012", 7)
    sale = commit_sale(db, config, SaleOrder((Scan(epc), Scan(TEA)), MEMBER, 500, (Payment("cash", 2000),)))
    with pytest.raises(SerialAlreadySold):
        commit_sale(db, config, SaleOrder((Scan(epc),), payments=(Payment("cash", 2000),)))
    balance_before = db.conn.execute("SELECT sum(delta) FROM points_ledger").fetchone()[0]
    back = refund_sale(db, config, sale.receipt_no)
    assert back.refund_of == sale.receipt_no and back.total == -sale.total
    assert back.points_balance_after == 5000
    assert db.conn.execute("SELECT sum(delta) FROM stock_ledger").fetchone()[0] == 0
    assert db.conn.execute("SELECT sum(delta) FROM points_ledger").fetchone()[0] == balance_before - sale.points_earned + 500
    assert [r[0] for r in db.conn.execute("SELECT type FROM outbox ORDER BY seq")][-1] == "sale.refunded"
    before = counts(db)
    with pytest.raises(NotRefundable, match="already refunded by S001-00000002"):
        refund_sale(db, config, sale.receipt_no)
    with pytest.raises(NotRefundable, match="is a refund itself"):
        refund_sale(db, config, back.receipt_no)
    assert counts(db) == before
    # The returned tag can be sold again.
    assert commit_sale(db, config, SaleOrder((Scan(epc),), payments=(Payment("card", 1980),))).total == 1980


def test_member_is_found_by_card_phone_or_id(store) -> None:
    _path, _config, db = store
    assert {find_member_id(db, q) for q in ("C100", "090-1234-5678", MEMBER)} == {MEMBER}
    with pytest.raises(CheckoutRefused, match="no member matches"):
        find_member_id(db, "C999")


# ---------------------------------------------------------------------------- command


def test_checkout_command_prints_the_fixed_json_keys(store, capsys, monkeypatch) -> None:
    path, config, db = store
    add_store_clerks(config.database)
    pins_on_stdin(monkeypatch)
    code = main(["edge", "checkout", "--config", str(path), "--scan", TEA, "--scan", "sku:TSHIRT-M",
                 "--member", "090-1234-5678", "--redeem", "30", "--pay", "cash:3000", "--json", *AS_CLERK])  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    # 内税: 10% on ¥1,980 = 180 (1980*10/110), 8% on ¥150 = 11 (150*8/108 = 11.1, rounded down)
    assert out == {"receipt_no": "S001-00000001", "total": 2130,
                   "tax_by_rate": {"10": {"taxable": 1980, "tax": 180}, "8": {"taxable": 150, "tax": 11}},
                   "points_earned": 21, "points_redeemed": 30, "change": 900}  # fmt: skip
    assert main(["edge", "refund", "S001-00000001", "--config", str(path), "--json", *AS_MANAGER]) == 0
    back = json.loads(capsys.readouterr().out)
    assert (back["total"], back["points_earned"], back["points_redeemed"]) == (-2130, -21, -30)
    assert main(["edge", "checkout", "--config", str(path), "--scan", ONIGIRI, "--pay", "cash:200", *AS_CLERK]) == 0
    receipt = capsys.readouterr().out
    assert "S001-00000003" in receipt and "おにぎり 鮭" in receipt and "お釣り" in receipt


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scan", "4901085089580", "--pay", "cash:500"], "4901085089580: bad check digit (expected 3)"),
        (["--scan", "4909999999998", "--pay", "cash:500"], "4909999999998: not in the product list"),
        (["--scan", TEA, "--pay", "cash:100"], "payment short: total ¥150, paid ¥100 (¥50 more needed)"),
    ],
)
def test_refused_checkout_command_exits_1_with_one_line_and_writes_nothing(store, capsys, monkeypatch, argv,
                                                                          message) -> None:  # fmt: skip
    path, config, db = store
    add_store_clerks(config.database)
    pins_on_stdin(monkeypatch)
    before = counts(db)
    assert main(["edge", "checkout", "--config", str(path), *argv, "--json", *AS_CLERK]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [f"tenpo: {message}"]
    assert counts(db) == before


def test_second_refund_command_exits_1(store, capsys, monkeypatch) -> None:
    path, config, _db = store
    add_store_clerks(config.database)
    pins_on_stdin(monkeypatch)
    assert main(["edge", "checkout", "--config", str(path), "--scan", TEA, "--pay", "cash:150", *AS_CLERK]) == 0
    assert main(["edge", "refund", "1", "--config", str(path), *AS_MANAGER]) == 0
    capsys.readouterr()
    assert main(["edge", "refund", "1", "--config", str(path), *AS_MANAGER]) == 1
    assert "already refunded" in capsys.readouterr().err


# ---------------------------------------------------------------------------- kill -9


SELLER = textwrap.dedent(
    """
    import random, sys
    from tenpo.edge import db as edge_db
    from tenpo.edge.checkout import Payment, Scan
    from tenpo.edge.checkout.errors import CheckoutRefused
    from tenpo.edge.checkout.store import SaleOrder, commit_sale, refund_sale
    from tenpo.edge.config import load_config

    config = load_config(sys.argv[1])
    db = edge_db.connect(config.database)
    rng = random.Random(int(sys.argv[2]))
    codes = ["4901085089583", "4901234567894", "sku:TSHIRT-M", "sku:UMBRELLA", "sku:SOAP"]
    print("ready", flush=True)
    while True:
        scans = tuple(Scan(rng.choice(codes)) for _ in range(rng.randint(1, 6)))
        member = "M-0001" if rng.random() < 0.5 else None
        try:
            sale = commit_sale(db, config, SaleOrder(scans, member, rng.choice((0, 0, 10)) if member else 0,
                                                     (Payment("cash", 20000),)))
            if rng.random() < 0.1:
                refund_sale(db, config, sale.receipt_no)
        except CheckoutRefused:
            pass
    """
)


def test_kill_9_during_sales_leaves_whole_sales_and_no_reused_receipt_number(store, tmp_path) -> None:
    path, _config, db = store
    rng = random.Random(42)
    for round_no in range(6):
        seller = subprocess.Popen([sys.executable, "-c", SELLER, str(path), str(round_no)], stdout=subprocess.PIPE)
        assert seller.stdout is not None and seller.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.1, 0.4))  # a random moment in a stream of back-to-back sales
        seller.send_signal(signal.SIGKILL)
        seller.wait()
        seller.stdout.close()
    conn = db.conn
    sales = conn.execute("SELECT receipt_no, sale, event_seq FROM sales ORDER BY receipt_no").fetchall()
    assert len(sales) > 20, "the seller got through sales between kills"
    # Receipt numbers: unique (primary key), and gap-free: the counter commits with the sale.
    numbers = [int(r[0].rsplit("-", 1)[1]) for r in sales]
    assert numbers == list(range(1, len(sales) + 1))
    assert read_counter(conn, "receipt") == len(sales)
    # Every sale is whole: its lines, ledger rows and events are all there, and nothing else is.
    for receipt_no, data, event_seq in sales:
        sale = json.loads(data)
        lines = conn.execute("SELECT count(*) FROM sale_lines WHERE receipt_no = ?", (receipt_no,)).fetchone()[0]
        assert lines == len(sale["lines"])
        stock = conn.execute("SELECT sku, delta FROM stock_ledger WHERE ref = ? ORDER BY id", (receipt_no,)).fetchall()
        assert stock == [(m["sku"], m["qty"]) for m in sale["stock_movements"]]
        points = conn.execute("SELECT delta FROM points_ledger WHERE ref = ? ORDER BY id", (receipt_no,)).fetchall()
        assert [p[0] for p in points] == [e["points"] for e in sale["points_entries"]]
        event = conn.execute("SELECT type, payload FROM outbox WHERE seq = ?", (event_seq,)).fetchone()
        assert event[0] in ("sale.completed", "sale.refunded") and json.loads(event[1])["receipt_no"] == receipt_no
    orphans = conn.execute(
        "SELECT count(*) FROM stock_ledger WHERE ref IS NOT NULL AND ref NOT IN (SELECT receipt_no FROM sales)"
    ).fetchone()[0]
    assert orphans == 0
    events = [r[0] for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    assert events == list(range(1, read_counter(conn, "outbox") + 1)), "outbox gap-free"
    assert len(events) == (
        conn.execute("SELECT count(*) FROM stock_ledger").fetchone()[0]
        + conn.execute("SELECT count(*) FROM points_ledger").fetchone()[0]
        + len(sales)
    )
