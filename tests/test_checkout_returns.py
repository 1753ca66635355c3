"""Partial returns (返品 of some items): hand-computed receipts, the property that any sequence of
partial returns adds up to the whole refund and never more, the store, the command, and HQ."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tenpo.cli import main
from tenpo.edge.checkout import (
    CheckoutConfig,
    Discount,
    MemberInfo,
    Payment,
    Rounding,
    Sale,
    SaleRequest,
    Scan,
    checkout,
    refund,
    sale_from_json,
    sale_to_json,
)
from tenpo.edge.checkout.errors import BadDiscount, NotRefundable
from tenpo.edge.checkout.store import SaleOrder, commit_sale, refund_sale
from tests.support.clerks import AS_CLERK, AS_MANAGER, add_store_clerks, pins_on_stdin
from tests.test_checkout_engine import AT, BEER, CATALOG, ONIGIRI, SHIRT, Catalog, config_st, discount_st, products_st
from tests.test_checkout_store import MEMBER as STORE_MEMBER
from tests.test_checkout_store import TEA, counts, store  # noqa: F401  (store is a fixture)
from tests.test_sales_reconciliation import (
    hq_ledger,
    hq_sales_total,
    ledger,
    store_sales_total,
    sync_up,
    two_stores,  # noqa: F401  (a fixture)
)

MEMBER = MemberInfo("M-001", points_balance=1000)


def sell(*scans: Scan, config: CheckoutConfig = CheckoutConfig(), **fields) -> Sale:
    return checkout(SaleRequest("R1", AT, scans, **fields), CATALOG, config)


def summary(back: Sale) -> tuple:
    return (back.total, {r.rate: r.tax for r in back.rates}, [(p.tender, p.amount) for p in back.payments],
            back.points_earned, back.points_redeemed)  # fmt: skip


# --- hand-computed receipts -------------------------------------------------------------------


def test_three_returns_of_one_receipt_add_up_to_it() -> None:
    # 内税, round-down. Beer ¥275 x3 (10%) = 825, onigiri ¥150 x2 (8%) = 300; ¥100 off the receipt.
    # Allocation: 100*825/1125 = 73.3 -> 73, 100*300/1125 = 26.7 -> 26, the spare yen to 8% -> 27.
    # 10%: 752, tax 752*10/110 = 68.4 -> 68. 8%: 273, tax 273*8/108 = 20.2 -> 20. Total 1,025.
    # Paid 100 points + ¥1,000 cash: change 75, cash netted 925. Earned (1025-100)/100 -> 9 points.
    sale = sell(Scan(BEER.gtin, 3), Scan(ONIGIRI.gtin, 2), member=MEMBER, redeem_points=100,
                payments=(Payment("cash", 1000),), receipt_discounts=(Discount.parse("100"),))  # fmt: skip
    assert (sale.total, sale.tax, sale.change, sale.points_earned) == (1025, 88, 75, 9)

    # 1 beer: its discount share splits 73 over back 275 / kept 550: 24.33 -> 24 (the spare yen
    # goes to the kept part, the larger remainder). 275 - 24 = 251; tax 251*10/110 = 22.8 -> 22.
    # Cash first: ¥251. Points kept: 9 * (925-251)/925 = 6.6 -> 6, so 3 are taken back.
    first = refund(sale, "R2", AT, {1: 1})
    assert summary(first) == (-251, {10: -22}, [("cash", -251)], -3, 0)
    assert first.receipt_discounts == (("値引", -24),)
    assert [(line.of_line, line.qty, line.total) for line in first.lines] == [(1, -1, -275)]

    # 2 beers and 1 onigiri. 10% is now all back: discount 73-24 = 49, 550-49 = 501, tax the rest
    # 68-22 = 46. 8%: 27 split over 150/150 is 13.5 each; the tie goes to the part back: 14.
    # 150-14 = 136, tax 136*8/108 = 10.07 -> 10. Total 637 in cash (674 left). Points kept
    # 9*(925-251-637)/925 = 0.36 -> 0: the other 6 go back.
    second = refund(sale, "R3", AT, {1: 2, 2: 1}, [first])
    assert summary(second) == (-637, {10: -46, 8: -10}, [("cash", -637)], -6, 0)

    # The last onigiri: 150 - (27-14) = 137, tax the rest 20-10 = 10. Cash left 37, then points 100.
    third = refund(sale, "R4", AT, None, [first, second])
    assert summary(third) == (-137, {8: -10}, [("points", -100), ("cash", -37)], 0, -100)
    assert [(e.kind, e.points) for e in third.points_entries] == [("redeem-return", 100)]

    # Together exactly the sale: 251+637+137 = 1025; tax 22+46 = 68 and 10+10 = 20.
    with pytest.raises(NotRefundable, match="R1: already refunded by R2, R3, R4"):
        refund(sale, "R5", AT, None, [first, second, third])


def test_line_discount_goes_back_pro_rata_and_outside_tax_settles_on_the_last() -> None:
    # 外税, round-half-up. 3 shirts ¥1,980 with 10% off the line: 5,940 - 594 = 5,346;
    # tax 534.6 -> 535; to pay 5,881 by card.
    config = CheckoutConfig(prices_include_tax=False, tax_rounding=Rounding.HALF_UP)
    sale = sell(Scan(SHIRT.gtin, 3, Discount.parse("10%")), config=config, payments=(Payment("card", 5881),))
    assert (sale.total, sale.tax) == (5881, 535)
    # 1 shirt: discount ceil(594/3) = 198, 1,782 + tax 178.2 -> 178 = 1,960.
    first = refund(sale, "R2", AT, {1: 1})
    assert (first.lines[0].discount, first.total, first.tax) == (-198, -1960, -178)
    # 2 shirts: discount 594-198 = 396, 3,564 + the rest of the tax 535-178 = 357 = 3,921.
    second = refund(sale, "R3", AT, {1: 2}, [first])
    assert (second.lines[0].discount, second.total, second.tax) == (-396, -3921, -357)
    assert first.total + second.total == -sale.total  # 1,960 + 3,921 = 5,881


def test_rounding_up_is_capped_so_returns_never_exceed_the_receipts_tax() -> None:
    # 内税, round-up: 3 onigiri = 450, tax ceil(450*8/108 = 33.3) = 34. One at a time each would be
    # ceil(150*8/108 = 11.1) = 12, and 3 x 12 = 36 > 34: the last return takes only the 10 left.
    sale = sell(Scan(ONIGIRI.gtin, 3), config=CheckoutConfig(tax_rounding=Rounding.UP), payments=(Payment("cash", 450),))
    backs: list[Sale] = []
    for n in range(3):
        backs.append(refund(sale, f"R{n + 2}", AT, {1: 1}, backs))
    assert [b.tax for b in backs] == [-12, -12, -10]


def test_the_sale_records_its_rounding_and_an_older_sale_takes_the_callers() -> None:
    sale = sell(Scan(ONIGIRI.gtin, 3), config=CheckoutConfig(tax_rounding=Rounding.UP), payments=(Payment("cash", 450),))
    assert sale_from_json(sale_to_json(sale)) == sale
    older = sale_from_json({**sale_to_json(sale), "tax_rounding": None})
    assert refund(older, "R2", AT, {1: 1}).tax == -11  # 11.1 rounded down, the default
    assert refund(older, "R2", AT, {1: 1}, tax_rounding=Rounding.UP).tax == -12


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ({3: 1}, "R1: has no line 3 (lines 1 to 2)"),
        ({1: 0}, "R1 line 1: quantity to return must be at least 1"),
        ({2: 3}, "R1 line 2 (おにぎり 鮭): 2 of 2 left to return, cannot return 3"),
        ({}, "R1: no lines to return"),
    ],
)
def test_returning_what_is_not_there_is_refused(lines, message) -> None:
    sale = sell(Scan(BEER.gtin), Scan(ONIGIRI.gtin, 2), payments=(Payment("cash", 1000),))
    with pytest.raises(NotRefundable, match=message.replace("(", r"\(").replace(")", r"\)")):
        refund(sale, "R2", AT, lines)


def test_a_line_already_back_cannot_come_back_again() -> None:
    sale = sell(Scan(BEER.gtin), Scan(ONIGIRI.gtin, 2), payments=(Payment("cash", 1000),))
    first = refund(sale, "R2", AT, {2: None})
    assert first.lines[0].qty == -2
    with pytest.raises(NotRefundable, match=r"line 2 \(おにぎり 鮭\): already returned by R2"):
        refund(sale, "R3", AT, {2: 1}, [first])
    with pytest.raises(ValueError, match="not a refund of R1"):
        refund(sale, "R3", AT, None, [sale])


# --- properties -------------------------------------------------------------------------------


def _sums(backs: list[Sale]) -> dict[str, object]:
    tax: Counter[int] = Counter()
    taxable: Counter[int] = Counter()
    tenders: Counter[str] = Counter()
    stock: Counter[tuple[str, str | None]] = Counter()
    points: Counter[str] = Counter()
    for back in backs:
        for r in back.rates:
            tax[r.rate] += r.tax
            taxable[r.rate] += r.taxable
        for p in back.payments:
            tenders[p.tender] += p.amount
        for m in back.stock_movements:
            stock[(m.sku, m.serial)] += m.qty
        for e in back.points_entries:
            points[e.kind] += e.points
    drop = lambda c: {k: v for k, v in c.items() if v}  # noqa: E731
    return {"total": sum(b.total for b in backs), "tax": drop(tax), "taxable": drop(taxable),
            "tenders": drop(tenders), "stock": drop(stock), "points": drop(points),
            "earned": sum(b.points_earned for b in backs), "redeemed": sum(b.points_redeemed for b in backs)}  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(data=st.data(), products=products_st, config=config_st)
def test_any_partial_returns_add_up_to_the_whole_refund_and_never_more(data, products, config) -> None:
    catalog = Catalog(*products)
    scans = tuple(
        Scan(p.gtin, qty=data.draw(st.integers(1, 4)), discount=data.draw(st.none() | discount_st))
        for p in data.draw(st.lists(st.sampled_from(products), min_size=1, max_size=5))
    )
    receipt_discounts = tuple(data.draw(st.lists(discount_st, max_size=2)))
    member = MemberInfo("M", 50_000)
    try:
        probe = checkout(SaleRequest("P", AT, scans, payments=(Payment("cash", 10**9),),
                                     receipt_discounts=receipt_discounts), catalog, config)  # fmt: skip
    except BadDiscount:
        assume(False)
    redeem = data.draw(st.integers(0, min(probe.total, config.max_redeem_per_sale)))
    card = data.draw(st.integers(0, probe.total - redeem))
    cash = data.draw(st.integers(probe.total - redeem - card, probe.total - redeem - card + 5000))
    tenders = tuple(p for p in (Payment("card", card), Payment("cash", cash)) if p.amount)
    sale = checkout(SaleRequest("S", AT, scans, member, redeem, tenders, receipt_discounts), catalog, config)
    whole = refund(sale, "W", AT)

    backs: list[Sale] = []
    left = [line.qty for line in sale.lines]
    while any(left):
        if data.draw(st.integers(0, 9)) == 0:  # now and then "the rest" in one go
            lines = None
        else:
            open_lines = [n for n, q in enumerate(left, start=1) if q]
            picked = data.draw(st.lists(st.sampled_from(open_lines), min_size=1, unique=True))
            lines = {n: data.draw(st.integers(1, left[n - 1])) for n in picked}
            over = data.draw(st.sampled_from(picked))
            with pytest.raises(NotRefundable, match="left to return"):
                refund(sale, "X", AT, {over: left[over - 1] + 1}, backs)
        back = refund(sale, f"B{len(backs)}", AT, lines, backs)
        assert sale_from_json(sale_to_json(back)) == back
        for line in back.lines:
            left[line.of_line - 1] += line.qty
        backs.append(back)
        # Each return is a receipt of its own that adds up, and gives back only, never takes.
        assert sum(p.amount for p in back.payments) == back.total == sum(r.taxable for r in back.rates) <= 0
        assert sum(r.lines for r in back.rates) == back.subtotal == sum(line.total for line in back.lines)
        assert sum(r.discount for r in back.rates) == back.receipt_discount
        assert all(r.tax <= 0 and r.discount <= 0 and r.lines <= 0 for r in back.rates)
        assert back.points_earned <= 0 and back.points_redeemed <= 0
        # So far, never more than the sale: per rate, per tender, points, quantities.
        so_far = _sums(backs)
        original = {r.rate: r for r in sale.rates}
        assert all(-t <= original[rate].tax for rate, t in so_far["tax"].items())
        assert all(-t <= original[rate].taxable for rate, t in so_far["taxable"].items())
        assert -so_far["earned"] <= sale.points_earned and -so_far["redeemed"] <= sale.points_redeemed
        assert all(q >= 0 for q in left)
    assert _sums(backs) == _sums([whole])
    with pytest.raises(NotRefundable, match="already refunded"):
        refund(sale, "Z", AT, None, backs)


# --- the store, the command and HQ ------------------------------------------------------------


def test_store_takes_back_line_by_line_then_the_rest_then_refuses(store) -> None:  # noqa: F811 (imported fixture)
    _path, config, db = store
    sale = commit_sale(db, config, SaleOrder((Scan(TEA), Scan(TEA), Scan("sku:TSHIRT-M")), STORE_MEMBER, 0,
                                             (Payment("cash", 3000),)))  # fmt: skip
    first = refund_sale(db, config, sale.receipt_no, lines={1: 1})
    assert (first.total, first.refund_of) == (-150, sale.receipt_no)
    rest = refund_sale(db, config, "1")
    assert [(line.of_line, line.qty) for line in rest.lines] == [(1, -1), (2, -1)]
    assert first.total + rest.total == -sale.total
    assert db.conn.execute("SELECT sum(delta) FROM stock_ledger").fetchone()[0] == 0
    before = counts(db)
    with pytest.raises(NotRefundable, match="already refunded by S001-00000002, S001-00000003"):
        refund_sale(db, config, sale.receipt_no, lines={2: 1})
    assert counts(db) == before


def test_refund_command_takes_lines_and_refuses_more_than_is_left_writing_nothing(store, capsys, monkeypatch) -> None:  # noqa: F811 (imported fixture)
    path, config, db = store
    add_store_clerks(config.database)
    pins_on_stdin(monkeypatch)
    assert main(["edge", "checkout", "--config", str(path), "--scan", TEA, "--scan", TEA, "--scan", "sku:TSHIRT-M",
                 "--pay", "cash:3000", *AS_CLERK]) == 0  # fmt: skip
    capsys.readouterr()
    # Tea ¥150 x1 (8%): tax 150*8/108 = 11.1 -> 11.
    assert main(["edge", "refund", "1", "--line", "1:1", "--config", str(path), "--json", *AS_MANAGER]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"receipt_no": "S001-00000002", "total": -150, "tax_by_rate": {"8": {"taxable": -150, "tax": -11}},
                   "points_earned": 0, "points_redeemed": 0, "change": 0}  # fmt: skip
    before = counts(db)
    assert main(["edge", "refund", "1", "--line", "1:2", "--config", str(path), *AS_MANAGER]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "tenpo: receipt S001-00000001 line 1 (緑茶 500ml): 1 of 2 left to return, cannot return 2"
    ]
    assert counts(db) == before
    assert main(["edge", "refund", "1", "--line", "2", "--line", "1", "--config", str(path), *AS_MANAGER]) == 0
    assert "【返品】" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["edge", "refund", "1", "--line", "x:1", "--config", str(path), *AS_MANAGER])


def test_hq_keeps_several_refunds_of_one_receipt_and_its_sums_equal_the_stores(two_stores) -> None:  # noqa: F811 (imported fixture)
    central, stores = two_stores
    config, db = stores["S001"]
    sale = commit_sale(db, config, SaleOrder((Scan("sku:TSHIRT-M"), Scan("sku:BAG"), Scan("sku:TEA-500")),
                                             "M-0001", 500, (Payment("cash", 5000),)))  # fmt: skip
    refund_sale(db, config, sale.receipt_no, lines={2: 1})
    refund_sale(db, config, sale.receipt_no, lines={3: 1})
    sync_up(central, "S001", db)
    assert central.scalar("SELECT count(*) FROM sales WHERE refund_of = ?", (sale.receipt_no,)) == 2
    assert hq_sales_total(central, "S001") == store_sales_total(db) == 1980  # 4,130 sold, 2,000 + 150 back
    assert hq_ledger(central, "stock_ledger", "sku", "S001") == ledger(db, "stock_ledger", "sku")
    assert hq_ledger(central, "points_ledger", "kind", "S001") == ledger(db, "points_ledger", "kind")
