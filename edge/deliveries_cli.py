"""`tenpo edge deliver`, `tenpo edge deliveries` and `tenpo edge delivery ship ID`: お取り寄せ for home delivery
(issue 18 §7), as the clerk terminal's Stock panel (F10) does it, for scripts and tests."""

from __future__ import annotations

import argparse

from tenpo.edge import deliveries
from tenpo.edge.checkout.model import Payment
from tenpo.edge.checkout.store import find_member_id
from tenpo.edge.clerk.accounts import record_action
from tenpo.edge.cli_support import (
    clerk_flag,
    json_flag,
    open_store,
    print_json,
    require_clerk_flag,
    signed_in,
    with_config,
)
from tenpo.shared.errors import UserError
from tenpo.shared.ids import is_id
from tenpo.shared.terminal import safe_text


def register_edge(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deliver = clerk_flag(with_config(commands.add_parser(
        "deliver", help="order a product another store has for delivery to the customer's home (お取り寄せ)")))  # fmt: skip
    deliver.add_argument("--sku", required=True)
    deliver.add_argument("--from", dest="from_store", required=True, metavar="STORE", help="the store that ships it")
    deliver.add_argument("--qty", type=int, default=1)
    deliver.add_argument("--member", metavar="QUERY", help="member id, card, phone or name (optional)")
    deliver.add_argument("--customer", required=True, help="the name to deliver to")
    deliver.add_argument("--address", required=True, help="postal code and address, one line")
    deliver.add_argument("--phone")
    json_flag(deliver)
    deliver.set_defaults(func=cmd_deliver)

    listing = with_config(commands.add_parser("deliveries", help="home deliveries ordered here or to ship from here"))
    listing.add_argument("--active", action="store_true", help="only those not shipped (nor refused) yet")
    listing.add_argument("--to-ship", action="store_true", help="only those this store ships")
    json_flag(listing)
    listing.set_defaults(func=cmd_list)

    one = commands.add_parser("delivery", help="ship a home delivery held here")
    moves = one.add_subparsers(dest="delivery_command", metavar="COMMAND")
    moves.required = True
    ship = clerk_flag(with_config(moves.add_parser(
        "ship", help="send it: a sale of the reserved items, paid on delivery (tender cod)")))  # fmt: skip
    ship.add_argument("reservation_id", metavar="ID")
    ship.add_argument("--pay", action="append", default=[], metavar="TENDER:YEN",
                      help="how it was paid if not on delivery (default: cod for the sale's total)")  # fmt: skip
    json_flag(ship)
    ship.set_defaults(func=cmd_ship)


def cmd_deliver(args: argparse.Namespace) -> int:
    require_clerk_flag(args, "a delivery order")
    config, db = open_store(args)
    clerk = signed_in(args, db, "a delivery order")
    member_id = find_member_id(db, args.member) if args.member else None
    reservation_id = deliveries.order(db, config.store_id, clerk.clerk_id, sku=args.sku, qty=args.qty,
                                      from_store=args.from_store, customer=args.customer, address=args.address,
                                      phone=args.phone, member_id=member_id)  # fmt: skip
    record_action(db, clerk, "edge deliver", reservation_id)
    if args.json:
        print_json({"reservation_id": reservation_id, "sku": args.sku, "qty": args.qty, "from_store": args.from_store,
                    "member_id": member_id, "state": "requested"})  # fmt: skip
    else:
        print(f"delivery {reservation_id} sent to HQ: {args.sku} x{args.qty} from {args.from_store}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    _config, db = open_store(args)
    found = deliveries.listing(db, role="ship" if args.to_ship else None, active_only=args.active)
    if args.json:
        print_json([{**d.as_json(), "status": d.status} for d in found])
        return 0
    if not found:
        print("no home deliveries")
        return 0
    for d in found:
        way = f"to ship · ordered at {d.other_store}" if d.role == "ship" else f"from {d.other_store}"
        who = ("(erased at the customer's request)" if d.erased else
               f"{safe_text(d.customer)} · {safe_text(d.address)}" + (f" · {safe_text(d.phone)}" if d.phone else ""))
        print(f"{d.reservation_id:<14} {d.status:<10} {d.sku:<14} x{d.qty:<4} {way:<24} {who}")
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    if not is_id(args.reservation_id):
        raise UserError(f"delivery id {safe_text(args.reservation_id)!r} is not a valid id")
    require_clerk_flag(args, "shipping a delivery (a sale)")
    config, db = open_store(args)
    clerk = signed_in(args, db, "shipping a delivery (a sale)")
    done, sale = deliveries.ship(db, config, args.reservation_id, clerk.name,
                                 tuple(Payment.parse(text) for text in args.pay))  # fmt: skip
    record_action(db, clerk, "edge delivery ship", f"{done.reservation_id} {sale.receipt_no}")
    if args.json:
        print_json({**done.as_json(), "status": done.status, "total": sale.total,
                    "paid": [{"tender": p.tender, "amount": p.amount} for p in sale.payments]})  # fmt: skip
    else:
        print(f"delivery {done.reservation_id}: shipped, receipt {sale.receipt_no} (¥{sale.total:,} "
              f"{'on delivery' if not args.pay else 'paid'})")  # fmt: skip
    return 0
