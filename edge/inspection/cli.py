"""`tenpo edge inspect ...`: ASNs from files, inspections to review, accept or hold, and their reports.

    tenpo edge inspect --asn FILE            load ASNs (JSON or CSV) into this store
    tenpo edge inspect --reads FILE          inspect a delivery from recorded reads (`tenpo rfid listen --json`)
    tenpo edge inspect list | show ID | accept ID | hold ID | asns

``accept`` (posts stock) and ``hold`` take ``--clerk ID`` (PIN without echo, or stdin's first line), who is
recorded as having decided; accepting a delivery that differs from its ASN needs a manager.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import sqlite_utils

from tenpo.edge.clerk.accounts import Action, record_action
from tenpo.edge.cli_support import clerk_flag, open_store, print_json, require_clerk_flag, signed_in, with_config
from tenpo.edge.config import StoreConfig
from tenpo.edge.inspection import store
from tenpo.edge.inspection.config import dock_settings
from tenpo.edge.inspection.epcis import epcis_document
from tenpo.edge.inspection.matching import DOOR, INSIDE
from tenpo.edge.inspection.report import render_text, report_json, write_reports
from tenpo.edge.inspection.session import DockSessions
from tenpo.shared.errors import UserError


def register_edge(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    inspect = with_config(commands.add_parser("inspect", help="dock inspection: ASNs, verdicts, receipts"))
    inspect.add_argument("--asn", type=Path, metavar="FILE", help="load ASNs from a JSON or CSV file")
    inspect.add_argument("--reads", type=Path, metavar="FILE",
                         help="inspect a delivery from recorded reads (JSON lines from `tenpo rfid listen --json`, "
                              "or EPC[,ANTENNA,RSSI] lines)")  # fmt: skip
    inspect.add_argument("--inside-antenna", type=int, action="append", default=[], metavar="N",
                         help="with --reads: antenna N faces inside the store (repeatable)")  # fmt: skip
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.set_defaults(func=cmd_inspect)
    sub = inspect.add_subparsers(dest="inspect_command", metavar="COMMAND")

    listing = with_config(sub.add_parser("list", help="recent inspections"))
    listing.add_argument("--status", choices=(store.PENDING, store.ACCEPTED, store.HELD))
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)

    show = with_config(sub.add_parser("show", help="one inspection's report"))
    show.add_argument("inspection_id")
    form = show.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="the JSON report")
    form.add_argument("--epcis", action="store_true", help="the EPCIS 2.0 JSON-LD document")
    show.set_defaults(func=cmd_show)

    for name, helptext in (("accept", "post what arrived to stock and report it to HQ"),
                           ("hold", "hold the delivery for a manager (nothing is posted)")):  # fmt: skip
        decide = clerk_flag(with_config(sub.add_parser(name, help=helptext)))  # who decided: the signed-in clerk
        decide.add_argument("inspection_id")
        if name == "hold":
            decide.add_argument("--note", help="why it is held")
        decide.add_argument("--json", action="store_true")
        decide.set_defaults(func=cmd_accept if name == "accept" else cmd_hold)

    asns = with_config(sub.add_parser("asns", help="ASNs this store knows (its own and other stores')"))
    asns.add_argument("--mine", action="store_true", help="only this store's")
    asns.add_argument("--json", action="store_true")
    asns.set_defaults(func=cmd_asns)


# ---------------------------------------------------------------------------- handlers


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.asn is None and args.reads is None:
        return cmd_list(argparse.Namespace(**{**vars(args), "status": None}))
    config, db = open_store(args)
    output: dict[str, Any] = {}
    status = 0
    if args.asn is not None:
        parsed = store.load_asn_file(db, args.asn)
        output["loaded"] = [a.shipment_id for a in parsed.asns]
        output["rejected"] = parsed.rejected_shipments
        output["errors"] = [str(e) for e in parsed.errors]
        if not args.json:
            for asn in parsed.asns:
                units = len(asn.epcs) + sum(line.qty for line in asn.lines)
                print(f"ASN {asn.shipment_id} for {asn.store}: {units} items, {len(asn.cartons)} cartons")
            for error in parsed.errors:
                print(f"  rejected {error}", file=sys.stderr)
        status = 1 if parsed.errors else 0
    if args.reads is not None:
        record = _inspect_reads(config, db, args.reads, frozenset(args.inside_antenna))
        output["inspection"] = report_json(record)
        if not args.json:
            print(render_text(record), end="")
    if args.json:
        print_json(output)
    return status


def _inspect_reads(config: StoreConfig, db: sqlite_utils.Database, path: Path, inside: frozenset[int]) -> store.InspectionRecord:
    settings = dock_settings(config)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    sessions = DockSessions(settings.session)
    last = 0.0
    for number, line in enumerate(lines):
        parsed = _read_line(line, number * 0.01)
        if parsed is None:
            continue
        epc, rssi, antenna, ts = parsed
        sessions.feed(epc, rssi, INSIDE if antenna in inside else DOOR, ts)
        last = max(last, ts)
    closed = sessions.close_now(last)
    if closed is None:
        raise UserError(f"{path}: no read passed the RSSI threshold; nothing to inspect")
    record = store.record_inspection(db, config.store_id, closed, now=closed.closed_at)
    write_reports(record, settings.reports)
    return record


def _read_line(line: str, default_ts: float) -> tuple[str, int | None, int, float] | None:
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return None
        epc = data.get("epc") if isinstance(data, dict) else None
        if not isinstance(epc, str):
            return None  # e.g. the counts line at the end of `tenpo rfid listen --json`
        rssi, antenna, ts = data.get("rssi"), data.get("antenna", 1), data.get("ts", default_ts)
        if not (rssi is None or isinstance(rssi, int)) or not isinstance(antenna, int) or not isinstance(ts, (int, float)):
            return None
        return epc.upper(), rssi, antenna, float(ts)
    fields = [f.strip() for f in text.split(",")]
    try:
        if len(fields) == 1:
            return fields[0].upper(), None, 1, default_ts
        if len(fields) == 3:
            return fields[0].upper(), int(fields[2]), int(fields[1]), default_ts
    except ValueError:
        return None
    return None


def cmd_list(args: argparse.Namespace) -> int:
    config, db = open_store(args)
    records = store.list_inspections(db.conn, config.store_id, args.status)
    if args.json:
        print_json([{"inspection_id": r.inspection_id, "shipment_id": r.shipment_id, "status": r.status,
                      "closed_at": r.closed_at, "summary": r.verdict.summary()} for r in records])  # fmt: skip
        return 0
    if not records:
        print("no inspections yet")
        return 0
    for r in records:
        s = r.verdict.summary()
        closed = time.strftime("%m-%d %H:%M", time.localtime(r.closed_at))
        print(f"{r.inspection_id}  {r.status:<8} {r.shipment_id or '-':<16} {closed}  matched {s['matched']} "
              f"missing {s['missing']} unexpected {s['unexpected']} wrong-store {s['wrong_store']}")  # fmt: skip
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    config, db = open_store(args)
    record = store.get_inspection(db.conn, config.store_id, args.inspection_id)
    if args.epcis:
        reports = dock_settings(config).reports
        print_json(epcis_document(record, read_point=reports.read_point, biz_location=reports.biz_location,
                                   tz_offset=reports.tz_offset, created=time.time()))  # fmt: skip
    elif args.json:
        print_json(report_json(record))
    else:
        print(render_text(record), end="")
    return 0


def _decided(args: argparse.Namespace, config: StoreConfig, record: store.InspectionRecord) -> int:
    paths = write_reports(record, dock_settings(config).reports)
    if args.json:
        print_json({**report_json(record), "reports": [str(p) for p in paths]})
    else:
        print(render_text(record), end="")
        print(f"reports: {paths[0].parent}/{record.inspection_id}.{{txt,json,epcis.jsonld}}")
    return 0


def cmd_accept(args: argparse.Namespace) -> int:
    require_clerk_flag(args, "accepting a delivery")
    config, db = open_store(args)
    location = dock_settings(config).location
    pending = store.get_inspection(db.conn, config.store_id, args.inspection_id)
    override = not pending.verdict.clean  # differences from the ASN: a manager accepts them, as at the terminal
    doing = "accepting a delivery that differs from its ASN" if override else "accepting a delivery"
    clerk = signed_in(args, db, doing, Action.INSPECTION_OVERRIDE if override else None)
    record = store.accept(db, config.store_id, args.inspection_id, clerk.clerk_id, location)
    record_action(db, clerk, "edge inspect accept", args.inspection_id)
    return _decided(args, config, record)


def cmd_hold(args: argparse.Namespace) -> int:
    require_clerk_flag(args, "holding a delivery")
    config, db = open_store(args)
    clerk = signed_in(args, db, "holding a delivery")
    record = store.hold(db, config.store_id, args.inspection_id, clerk.clerk_id, args.note)
    record_action(db, clerk, "edge inspect hold", args.inspection_id)
    return _decided(args, config, record)


def cmd_asns(args: argparse.Namespace) -> int:
    config, db = open_store(args)
    rows = store.list_asns(db.conn, config.store_id if args.mine else None)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no ASNs")
        return 0
    for row in rows:
        mine = "" if row["store"] == config.store_id else "  (another store)"
        print(f"{row['shipment_id']:<18} {row['store']:<8} {row['status']:<9} {row['units']:>6} items "
              f"{row['cartons']:>3} cartons  from {row['source']}{mine}")  # fmt: skip
    return 0
