"""`tenpo edge reservations` and `tenpo edge reservation ready|reject|ship|pickup ID`: the holds this store keeps
for channels and other stores' clerks. Moves take ``--clerk ID`` (PIN without echo, or stdin's first line);
a pickup is a sale through checkout that consumes the reservation in its own transaction; a ship sends one
collected at another store there by transfer (docs/transfers.md)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import sqlite_utils

from tenpo.edge import transfers
from tenpo.edge.checkout.cli import _print as print_sale
from tenpo.edge.checkout.model import Payment, Scan
from tenpo.edge.checkout.store import SaleOrder, commit_sale, find_member_id
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
from tenpo.edge.reservations import store
from tenpo.shared.errors import UserError
from tenpo.shared.ids import is_id
from tenpo.shared.terminal import safe_text


def register_edge(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = with_config(commands.add_parser("reservations", help="reservations held at this store (BOPIS, 取り置き)"))
    listing.add_argument("--active", action="store_true",
                         help="only what the counter still has to do: confirmed, ready, on its way here")  # fmt: skip
    json_flag(listing)
    listing.set_defaults(func=cmd_list)

    one = commands.add_parser("reservation", help="move a reservation held here: ready, reject, ship, pickup")
    moves = one.add_subparsers(dest="reservation_command", metavar="COMMAND")
    moves.required = True
    ready = clerk_flag(with_config(moves.add_parser("ready", help="picked from the shelf, waiting at the counter")))
    ready.add_argument("reservation_id", metavar="ID")
    json_flag(ready)
    ready.set_defaults(func=cmd_ready)
    reject = clerk_flag(with_config(moves.add_parser("reject", help="cannot hold it: the units are free again")))
    reject.add_argument("reservation_id", metavar="ID")
    reject.add_argument("--reason", required=True, help="why (damaged, miscounted ...); the channel sees it")
    json_flag(reject)
    reject.set_defaults(func=cmd_reject)
    ship = clerk_flag(with_config(moves.add_parser(
        "ship", help="collected at another store: send the held units there (a transfer; its dock receives it)")))  # fmt: skip
    ship.add_argument("reservation_id", metavar="ID")
    ship.add_argument("--epc-file", type=Path, metavar="FILE", help="the tags packed, one EPC (hex) per line")
    json_flag(ship)
    ship.set_defaults(func=cmd_ship)
    pickup = clerk_flag(with_config(moves.add_parser(
        "pickup", help="hand it over: a sale of the reserved items that consumes the reservation",
    )))  # fmt: skip
    pickup.add_argument("reservation_id", metavar="ID")
    pickup.add_argument("--pay", action="append", default=[], metavar="TENDER:YEN",
                        help="cash:1000, card:2480, web:2480 (paid online) ... as for checkout")  # fmt: skip
    pickup.add_argument("--member", metavar="QUERY", help="member for points (default: the reservation's, if known here)")
    pickup.add_argument("--json", action="store_true", help="print the checkout keys plus reservation_id")
    pickup.set_defaults(func=cmd_pickup)


def _checked(reservation_id: str) -> str:
    if not is_id(reservation_id):
        raise UserError(f"reservation id {safe_text(reservation_id)!r} is not a valid id")
    return reservation_id


def cmd_list(args: argparse.Namespace) -> int:
    config, db = open_store(args)
    here = config.store_id
    found = store.listing(db, active_only=args.active, here=here)
    if args.json:
        rows = []
        for r in found:
            data = r.as_json()
            data["available"] = store.available(db.conn, r.sku)
            data["transit"] = r.transit(here)
            rows.append(data)
        print_json(rows)
        return 0
    if not found:
        print("no reservations held here")
        return 0
    for r in found:
        who = r.customer or r.member_id or "-"
        pickup = f"pickup {r.pickup_store or here}"
        transit = r.transit(here)
        print(f"{r.reservation_id:<14} {r.state:<10} {r.sku:<14} x{r.qty:<4} {r.channel:<12} {pickup:<13}"
              f" {safe_text(who)}" + (f"  [{transit}{f' {r.transfer_id}' if r.transfer_id else ''}]" if transit else "")
              + (f"  ({safe_text(r.reason)})" if r.reason else ""))  # fmt: skip
    return 0


def _show(reservation: store.Reservation, as_json: bool) -> None:
    if as_json:
        print_json(reservation.as_json())
    else:
        print(f"reservation {reservation.reservation_id}: {reservation.state}")


def cmd_ready(args: argparse.Namespace) -> int:
    reservation_id = _checked(args.reservation_id)
    require_clerk_flag(args, "marking a reservation ready")
    _config, db = open_store(args)
    clerk = signed_in(args, db, "marking a reservation ready")
    done = store.mark_ready(db, reservation_id, clerk.clerk_id)
    record_action(db, clerk, "edge reservation ready", reservation_id)
    _show(done, args.json)
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    reservation_id = _checked(args.reservation_id)
    require_clerk_flag(args, "rejecting a reservation")
    _config, db = open_store(args)
    clerk = signed_in(args, db, "rejecting a reservation")
    done = store.reject(db, reservation_id, args.reason, clerk.clerk_id)
    record_action(db, clerk, "edge reservation reject", reservation_id)
    _show(done, args.json)
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    reservation_id = _checked(args.reservation_id)
    require_clerk_flag(args, "shipping a reservation to its pickup store")
    epcs = transfers.read_epc_file(args.epc_file) if args.epc_file else None
    config, db = open_store(args)
    clerk = signed_in(args, db, "shipping a reservation to its pickup store")
    done, sent = store.ship(db, config.store_id, reservation_id, clerk.clerk_id, epcs)
    record_action(db, clerk, "edge reservation ship", f"{reservation_id} {sent.transfer_id}")
    if args.json:
        print_json({**done.as_json(), "transfer": sent.as_json()})
    else:
        print(f"reservation {reservation_id}: in_transit to {sent.to_store} as transfer {sent.transfer_id}"
              f" ({sent.qty} × {safe_text(sent.sku)}); its dock receives it")  # fmt: skip
    return 0


def cmd_pickup(args: argparse.Namespace) -> int:
    reservation_id = _checked(args.reservation_id)
    require_clerk_flag(args, "a pickup (a sale)")
    config, db = open_store(args)
    clerk = signed_in(args, db, "a pickup (a sale)")
    held = store.get(db.conn, reservation_id)
    if held is None or held.state not in store.HOLDING:
        state = "not held at this store" if held is None else f"is {held.state}"
        raise UserError(f"reservation {reservation_id} {state}: nothing to hand over")
    member_id = find_member_id(db, args.member) if args.member else _known_member(db, held.member_id)
    order = SaleOrder(scans=tuple(Scan(f"sku:{held.sku}") for _ in range(held.qty)), member_id=member_id,
                      payments=tuple(Payment.parse(text) for text in args.pay), clerk=clerk.name,
                      reservation=reservation_id)  # fmt: skip
    sale = commit_sale(db, config, order)
    record_action(db, clerk, "edge reservation pickup", f"{reservation_id} {sale.receipt_no}")
    if args.json:
        print(json.dumps({"reservation_id": reservation_id, "receipt_no": sale.receipt_no, "total": sale.total,
                          "at": time.time()}, ensure_ascii=False))  # fmt: skip
        return 0
    print_sale(db, config, sale, False)
    return 0


def _known_member(db: sqlite_utils.Database, member_id: str | None) -> str | None:
    if member_id is None:
        return None
    row = db.conn.execute("SELECT 1 FROM members WHERE member_id = ?", (member_id,)).fetchone()
    return member_id if row else None
