"""`tenpo edge receipt reprint RECEIPT_NO`: print a saved receipt again (marked 再発行), e.g. after
the printer ran out of paper. Without a [printer] the stored text is printed to stdout."""

from __future__ import annotations

import argparse
import sys

from tenpo.edge.checkout.store import load_sale
from tenpo.edge.clerk.accounts import record_action
from tenpo.edge.cli_support import clerk_flag, open_store, require_clerk_flag, signed_in, with_config
from tenpo.edge.printer.receipt import REPRINT_MARK, print_receipt
from tenpo.shared.errors import UserError


def register_edge(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `receipt reprint` to the `tenpo edge` group."""
    receipt = commands.add_parser("receipt", help="receipts already saved with their sales")
    actions = receipt.add_subparsers(dest="receipt_command", required=True)
    again = clerk_flag(with_config(actions.add_parser(
        "reprint", help="print a saved receipt again on the store's printer (marked 再発行)",
        description="Print a saved receipt again, marked 再発行 (reprint); the cash drawer stays shut. "
        "Without a [printer] section the receipt text is printed to stdout. Exit 1 if the printer fails. "
        "Takes --clerk (a reprint shows the member number and can back a false return): who reprinted is recorded.",
    )))  # fmt: skip
    again.add_argument("receipt_no", help="e.g. S001-00000042 (or just 42)")
    again.set_defaults(func=cmd_reprint)


def cmd_reprint(args: argparse.Namespace) -> int:
    require_clerk_flag(args, "a receipt reprint")
    config, db = open_store(args)
    clerk = signed_in(args, db, "a receipt reprint")
    stored = load_sale(db, config.store_id, args.receipt_no)
    if stored is None:
        raise UserError(f"receipt {args.receipt_no}: no such sale in this store")
    record_action(db, clerk, "edge receipt reprint", stored.sale.receipt_no)
    outcome = print_receipt(config, stored.receipt, reprint=True)
    if not outcome.configured:
        print(REPRINT_MARK)
        print(stored.receipt, end="" if stored.receipt.endswith("\n") else "\n")
        return 0
    if outcome.error is not None:
        print(f"tenpo: {outcome.error}", file=sys.stderr)
        return 1
    print(f"receipt {stored.sale.receipt_no} reprinted")
    return 0
