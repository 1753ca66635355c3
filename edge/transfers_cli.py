"""`tenpo edge transfer create --to ID --sku S --qty N [--epc-file F] --clerk ID` and `tenpo edge transfers`:
stock sent to another store (docs/transfers.md). Creating one moves stock, so it takes a signed-in clerk."""

from __future__ import annotations

import argparse
from pathlib import Path

from tenpo.edge import transfers
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
from tenpo.shared.terminal import safe_text


def register_edge(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    transfer = commands.add_parser("transfer", help="send stock to another store (HQ makes its ASN)")
    transfer_commands = transfer.add_subparsers(dest="transfer_command", metavar="COMMAND")
    transfer_commands.required = True
    create = clerk_flag(with_config(transfer_commands.add_parser(
        "create", help="take stock out here and send it to --to; the receiving dock inspects it")))  # fmt: skip
    create.add_argument("--to", required=True, metavar="STORE", help="the receiving store's id")
    create.add_argument("--sku", required=True)
    create.add_argument("--qty", type=int, help="units (default: the number of tags in --epc-file)")
    create.add_argument("--epc-file", type=Path, metavar="FILE", help="the tags sent, one EPC (hex) per line")
    json_flag(create)
    create.set_defaults(func=cmd_transfer_create)
    listing = with_config(commands.add_parser("transfers", help="transfers sent from this store, newest first"))
    json_flag(listing)
    listing.set_defaults(func=cmd_transfers)


def cmd_transfer_create(args: argparse.Namespace) -> int:
    doing = "sending stock to another store"
    require_clerk_flag(args, doing)
    epcs = transfers.read_epc_file(args.epc_file) if args.epc_file else None
    config, db = open_store(args)
    clerk = signed_in(args, db, doing)
    made = transfers.create_transfer(db, config.store_id, to_store=args.to, sku=args.sku, qty=args.qty, epcs=epcs,
                                     clerk_id=clerk.clerk_id)  # fmt: skip
    record_action(db, clerk, "edge transfer create", made.transfer_id)
    if args.json:
        print_json(made.as_json())
    else:
        print(f"{made.transfer_id}: {made.qty} × {safe_text(made.sku)} to {made.to_store}"
              f"{f' ({made.epcs} tags listed)' if made.epcs else ''}; HQ sends the ASN when the link is up")
    return 0


def cmd_transfers(args: argparse.Namespace) -> int:
    _config, db = open_store(args)
    found = transfers.transfers(db)
    if args.json:
        print_json([t.as_json() for t in found])
        return 0
    if not found:
        print("no transfers sent from this store")
    for t in found:
        print(f"{t.transfer_id}  to {t.to_store}  {t.qty:>5} × {safe_text(t.sku)}  clerk {t.clerk_id or '-'}")
    return 0
