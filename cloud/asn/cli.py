"""`tenpo cloud asn ...`: import ASNs into the change feed, list them, close one, see dock inspections."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tenpo.cloud.asn import admin
from tenpo.cloud.cli_support import db_flag, print_json
from tenpo.cloud.db import Central


def register_cloud(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    asn = commands.add_parser("asn", help="advance ship notices and the dock inspections of the stores")
    sub = asn.add_subparsers(dest="asn_command", metavar="COMMAND")
    sub.required = True

    imp = db_flag(sub.add_parser("import", help="import ASNs (JSON or CSV) and send them to the stores"))
    imp.add_argument("file", type=Path)
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(func=cmd_import)

    listing = db_flag(sub.add_parser("list", help="ASNs and whether they were received"))
    listing.add_argument("--store")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)

    close = db_flag(sub.add_parser("close", help="cancel an open ASN (the delivery will not come)"))
    close.add_argument("shipment_id")
    close.set_defaults(func=cmd_close)

    inspections = db_flag(sub.add_parser("inspections", help="dock inspections the stores accepted or held"))
    inspections.add_argument("--store")
    inspections.add_argument("--json", action="store_true")
    inspections.set_defaults(func=cmd_inspections)


def cmd_import(args: argparse.Namespace) -> int:
    report = admin.import_asns(Central(args.db), args.file)
    if args.json:
        print_json(report.as_json())
    else:
        # Shipments are counted; a row may be refused without naming a shipment (a bad shipment_id): say so.
        refused = f"; {len(report.errors)} row{'s' if len(report.errors) != 1 else ''} refused" if report.errors else ""
        print(f"ASNs: {len(report.created)} created, {len(report.updated)} updated, {len(report.unchanged)} unchanged, "
              f"{len(report.rejected)} rejected{refused}")  # fmt: skip
        for error in report.errors:
            print(f"  rejected {error}", file=sys.stderr)
    return 1 if report.rejected or report.errors else 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = admin.asn_rows(Central(args.db, create=False), args.store)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no ASNs")
    for r in rows:
        received = f"received {time.strftime('%m-%d %H:%M', time.localtime(r['received_at']))}" if r["received_at"] else ""
        print(f"{r['shipment_id']:<18} {r['store_id']:<8} {r['status']:<9} {r['units']:>6} items  {received}")
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    admin.close_asn(Central(args.db, create=False), args.shipment_id)
    print(f"ASN {args.shipment_id} closed; the stores stop expecting it")
    return 0


def cmd_inspections(args: argparse.Namespace) -> int:
    rows = admin.inspection_rows(Central(args.db, create=False), args.store)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no inspections reported yet")
    for r in rows:
        s = r["summary"]
        print(f"{r['store_id']:<8} {r['inspection_id']:<16} {r['shipment_id'] or '-':<16} {r['status']:<9}"
              f" received {s.get('received_posted', s.get('received', 0))}  missing {s.get('missing', 0)}"
              f"  unexpected {s.get('unexpected', 0)}  wrong-store {s.get('wrong_store', 0)}")  # fmt: skip
    return 0
