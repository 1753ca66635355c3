"""`tenpo edge checkout` and `tenpo edge refund`: sales from a script or a terminal, on the same
engine and the same one-transaction store as the clerk terminal.

A refused sale raises a CheckoutRefused (a UserError): tenpo.cli prints its one line on stderr and
exits 1, and the rolled-back transaction has written nothing. Both take ``--clerk ID`` (the PIN asked
without echo, or stdin's first line); a refund needs a manager, as at the clerk terminal.
"""

from __future__ import annotations

import argparse
import json
import sys

import sqlite_utils

from tenpo.edge.checkout.model import Discount, Payment, Sale, Scan
from tenpo.edge.checkout.returns import parse_returned_line, returned_lines
from tenpo.edge.checkout.store import SaleOrder, commit_sale, find_member_id, load_sale, refund_sale, summary_json
from tenpo.edge.clerk import approvals
from tenpo.edge.clerk.accounts import Action, record_action
from tenpo.edge.cli_support import MANAGER, clerk_flag, open_store, require_clerk_flag, signed_in, with_config
from tenpo.edge.config import StoreConfig
from tenpo.edge.printer.receipt import print_receipt


def register_edge(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `checkout` and `refund` to the `tenpo edge` group."""
    sell = clerk_flag(with_config(commands.add_parser(
        "checkout", help="sell: scan codes, a member, payments; prints the receipt",
        description="Sell in one transaction and print the receipt. A code scanned twice is two units. "
        "A refused sale (bad check digit, unknown code, payment short ...) prints why and writes nothing.",
    )))  # fmt: skip
    sell.add_argument("--scan", action="append", required=True, metavar="CODE",
                      help="JAN/EAN, in-store code, RFID EPC (hex or urn:epc:...) or sku:SKU; repeat per item")  # fmt: skip
    sell.add_argument("--member", metavar="QUERY", help="member id, card number, phone, email or name")
    sell.add_argument("--redeem", type=int, default=0, metavar="POINTS", help="points to pay with (1 point = ¥1)")
    sell.add_argument("--pay", action="append", default=[], metavar="TENDER:YEN",
                      help="cash:1000, card:2480, qr:500 ... (repeatable; only cash gives change)")  # fmt: skip
    sell.add_argument("--discount", action="append", default=[], metavar="YEN|PCT%",
                      help="receipt discount or coupon, e.g. 100 or 10%% (repeatable, applied in order)")  # fmt: skip
    sell.add_argument("--json", action="store_true",
                      help="print receipt_no, total, tax_by_rate, points_earned, points_redeemed, change")  # fmt: skip
    sell.set_defaults(func=cmd_checkout)

    back = clerk_flag(with_config(commands.add_parser(
        "refund", help="take back an earlier sale, whole or some lines (返品)",
        description="Refund what is left of an earlier sale, or with --line only some of its items. "
        "Returning more than is left prints why and writes nothing. Needs a manager (--clerk).",
    )), MANAGER)  # fmt: skip
    back.add_argument("receipt_no", help="e.g. S001-00000042 (or just 42)")
    back.add_argument("--line", action="append", default=[], type=parse_line, metavar="N[:QTY]",
                      help="line number as printed on the receipt (1 = first item), and how many of it come back "
                      "(default: all that is left of the line); repeatable")  # fmt: skip
    back.add_argument("--json", action="store_true", help="print the same keys as checkout --json")
    back.set_defaults(func=cmd_refund)


def cmd_checkout(args: argparse.Namespace) -> int:
    require_clerk_flag(args, "a sale")
    config, db = open_store(args)
    clerk = signed_in(args, db, "a sale")
    order = SaleOrder(
        scans=tuple(Scan(code) for code in args.scan),
        member_id=find_member_id(db, args.member) if args.member else None,
        redeem_points=args.redeem,
        payments=tuple(Payment.parse(text) for text in args.pay),
        receipt_discounts=tuple(Discount.parse(text) for text in args.discount),
        clerk=clerk.name,  # 担当 on the receipt, saved with the sale, as the terminal does
    )
    sale = commit_sale(db, config, order)
    record_action(db, clerk, "edge checkout", sale.receipt_no)
    _print(db, config, sale, args.json)
    return 0


def cmd_refund(args: argparse.Namespace) -> int:
    require_clerk_flag(args, "a refund")
    config, db = open_store(args)
    manager = signed_in(args, db, "a refund", Action.REFUND)
    sale = refund_sale(db, config, args.receipt_no, lines=returned_lines(args.line), clerk=manager.name)
    record_action(db, manager, "edge refund", f"{sale.receipt_no} of {sale.refund_of}")
    approvals.record(db, approvals.Approval.REFUND, manager, manager, f"{sale.receipt_no} of {sale.refund_of} "
                     f"¥{sale.total} (tenpo edge refund)")  # fmt: skip
    _print(db, config, sale, args.json)
    return 0


def parse_line(text: str) -> tuple[int, int | None]:
    """``--line`` as argparse takes it: the error message is what the user sees."""
    try:
        return parse_returned_line(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print(db: sqlite_utils.Database, config: StoreConfig, sale: Sale, as_json: bool) -> None:
    """The receipt on stdout (or the JSON summary), and on the store's printer if it has one. The sale
    is committed: a printer problem is one line on stderr, the exit stays 0 (a retry must not sell twice)."""
    stored = load_sale(db, config.store_id, sale.receipt_no)  # the text as saved with the sale
    assert stored is not None
    outcome = print_receipt(config, stored.receipt, cash=any(p.tender == "cash" for p in sale.payments))
    if as_json:
        printed = {"printed": outcome.printed} if outcome.configured else {}  # the key only with a [printer]
        print(json.dumps(summary_json(sale) | printed, ensure_ascii=False, indent=2))
    else:
        print(stored.receipt, end="" if stored.receipt.endswith("\n") else "\n")
    advice = outcome.advice(sale.receipt_no)
    if advice:
        print(f"tenpo: {advice}", file=sys.stderr)
