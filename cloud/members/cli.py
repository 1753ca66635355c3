"""`tenpo cloud import members|orders FILE` and `tenpo cloud members show|merge|unmerge|export|erase`."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

from tenpo.cloud.cli_support import db_flag, print_json
from tenpo.cloud.db import Central
from tenpo.shared.filemodes import private_file
from tenpo.shared.terminal import unguarded

from .cli_review import register_members
from .config import load_rules
from .imports import import_members, import_orders
from .privacy import erase_member, export_members, export_text, show_member
from .resolve import manual_merge, unmerge
from .store import Pending, publish
from .weights import configured


def register_cloud(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add subcommands to the `tenpo cloud` group."""
    imp = commands.add_parser("import", help="import members or orders from other channels (idempotent)")
    imports = imp.add_subparsers(dest="import_command", metavar="COMMAND")
    imports.required = True
    members = db_flag(imports.add_parser(
        "members", help="a member list: CSV (UTF-8, UTF-8 with BOM or Shift_JIS) with columns source, source_id,"
                        " name, kana, email, phone, postal_code, address, birth_date, card_no"))  # fmt: skip
    orders = db_flag(imports.add_parser(
        "orders", help="orders: Shopify's orders CSV export, or JSON Lines (docs/members.md)"))
    orders.add_argument("--channel", default="web", help="channel of a Shopify file (default: web)")
    for parser, handler in ((members, cmd_import_members), (orders, cmd_import_orders)):
        parser.add_argument("file", type=Path)
        parser.add_argument("--rules", type=Path, help="TOML with [channels.NAME] points rules and [matching] thresholds")
        parser.add_argument("--json", action="store_true", help="the per-row report as JSON")
        parser.set_defaults(func=handler)

    group = commands.add_parser("members", help="golden member records: show, merge, unmerge, export, erase")
    sub = group.add_subparsers(dest="members_command", metavar="COMMAND")
    sub.required = True
    show = db_flag(sub.add_parser("show", help="a golden record with its sources, merges, points, orders, store sales"
                                              " and visits"))
    show.add_argument("member_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)
    merge = db_flag(sub.add_parser("merge", help="merge member B into member A (A's id survives)"))
    merge.add_argument("winner", metavar="A")
    merge.add_argument("loser", metavar="B")
    merge.add_argument("--rules", type=Path)
    merge.add_argument("--json", action="store_true")
    merge.set_defaults(func=cmd_merge)
    unmerge = db_flag(sub.add_parser("unmerge", help="undo the merge of a merged-away id, or detach SOURCE:SOURCE_ID"))
    unmerge.add_argument("member_id", metavar="ID")
    unmerge.add_argument("--rules", type=Path)
    unmerge.add_argument("--json", action="store_true")
    unmerge.set_defaults(func=cmd_unmerge)
    export = db_flag(sub.add_parser("export", help="every golden record with its source records"))
    export.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    export.add_argument("--output", "-o", type=Path, help="file to write (default: standard output)")
    export.set_defaults(func=cmd_export)
    erase = db_flag(sub.add_parser("erase", help="erase a person's personal data at HQ and in every store"))
    erase.add_argument("member_id", metavar="ID")
    erase.add_argument("--reason", required=True)
    erase.add_argument("--json", action="store_true")
    erase.set_defaults(func=cmd_erase)
    register_members(sub)  # review, train, quality, rules


def _run_import(args: argparse.Namespace, kind: str) -> int:
    db = Central(args.db)
    config = configured(db, load_rules(args.rules))
    on_row = None if args.json else _print_row
    kwargs: dict[str, Any] = {"on_row": on_row}
    bar = _progress_bar() if sys.stderr.isatty() else None
    try:
        if bar is not None:
            bar.start()
            task = bar.add_task(f"importing {args.file.name}", total=max(args.file.stat().st_size, 1))
            kwargs["progress"] = lambda done, total: bar.update(task, completed=done, total=total)
        if kind == "members":
            report = import_members(db, args.file, config, **kwargs)
        else:
            report = import_orders(db, args.file, config, channel=args.channel, **kwargs)
    finally:
        if bar is not None:
            bar.stop()
    counts = report.counts()
    if args.json:
        print_json(report.as_json())
    else:
        print(f"{kind}: " + ", ".join(f"{n} {status}" for status, n in counts.items()) + f" ({report.encoding})")
    return 1 if counts["rejected"] else 0  # the good rows are imported; the rejected ones need the user


def _progress_bar() -> Any:
    # Only a terminal gets the bar: scripts and --json runs do not pay for importing rich.
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                    transient=True, console=Console(file=unguarded(sys.stderr)))  # its escapes are its own  # fmt: skip


def _print_row(row: Any) -> None:
    if row.status == "rejected":
        print(f"line {row.line}: {row.key or '-'} rejected: {row.reason}", file=sys.stderr)
        return
    extra = f" (member {row.member}, {row.points:+d} points)" if row.member is not None else ""
    notes = [f"{name} {note.partition(':')[0]}" for name, note in row.notes().items()]
    fields = f" [{', '.join(notes)}]" if notes else ""  # the detail: `members show`, or --json
    print(f"line {row.line}: {row.key} {row.status} -> {row.member_id}{extra}{fields}")


def cmd_import_members(args: argparse.Namespace) -> int:
    return _run_import(args, "members")


def cmd_import_orders(args: argparse.Namespace) -> int:
    return _run_import(args, "orders")


def quality_note(quality: dict[str, str], value: str | None) -> str:
    """'raw' -> value (rule), or 'raw' (reason): what cleansing did to one field of a source record."""
    said = quality.get("rule") or quality.get("reason") or ""
    shown = f"{quality.get('raw')!r} -> {value}" if value is not None else repr(quality.get("raw"))
    return f"{shown} ({said})" if said else shown


def cmd_show(args: argparse.Namespace) -> int:
    data = show_member(Central(args.db, create=False), args.member_id)
    if args.json:
        print_json(data)
        return 0
    if data["merged_from"]:
        print(f"{data['merged_from']} was merged into {data['member_id']}")
    state = " (erased)" if data["erased"] else ""
    print(f"{data['member_id']}{state}  {data['name'] or '-'}  {data['kana'] or ''}")
    for key in ("email", "phone", "postal_code", "address", "birth_date", "card_no"):
        if data[key]:
            print(f"  {key:<11} {data[key]}  (from {data['provenance'].get(key, '?')})")
    print(f"  points      {data['points']:,}")
    consent = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in sorted(data["consent"].items())) or "-"
    print(f"  consent     {consent}")
    print(f"sources ({len(data['sources'])}):")
    for s in data["sources"]:
        print(f"  {s['source']}:{s['source_id']}  {s['name'] or '-'}  {s['phone'] or ''} {s['email'] or ''}")
        for name, q in s["field_quality"].items():
            if q["status"] in ("corrected", "unverified", "flagged"):  # valid and missing need no word
                print(f"      {name} {q['status']}: {quality_note(q, s.get(name))}")
    print(f"merges ({len(data['merges'])}):")
    for m in data["merges"]:
        what = m["loser"] or m["source"]
        print(f"  #{m['merge_id']} {what} -> {m['winner']} by {m['rule']}{' (undone)' if m['undone'] else ''}")
        if m["explanation"]:
            print(f"      {m['explanation']}")
    print(f"orders ({len(data['orders'])}):")
    for o in data["orders"]:
        print(f"  {o['channel']}:{o['order_id']}  {o['ordered_at'] or '-'}  ¥{o['total']:,}  {o['status']}  +{o['points']} pt")
    print(f"store sales ({len(data['sales'])}):")
    for s in data["sales"]:
        points = f"+{s['points_earned']} pt" + (f" -{s['points_redeemed']} pt" if s["points_redeemed"] else "")
        print(f"  {s['store_id']} {s['receipt_no']}  {s['at']}  {s['kind']}  ¥{s['total']:,}  {points}")
    print(f"visits ({len(data['visits'])}):")
    for v in data["visits"]:
        arrived = dt.datetime.fromtimestamp(v["arrived_at"]).strftime("%Y-%m-%d %H:%M")
        dwell = "still in the store" if v["dwell_s"] is None else f"{v['dwell_s'] / 60:.0f} min"
        print(f"  {v['store_id']} {v['store_name'] or ''}  {arrived}  {dwell}")
    return 0


def _change(args: argparse.Namespace, work: Any) -> Any:
    db, config, now = Central(args.db, create=False), load_rules(args.rules), time.time()
    config = configured(db, config)  # trained weights when the rules ask for them
    with db.transaction():
        pending = Pending()
        result = work(db, config, now, pending)
        publish(db, pending, now)
    return result


def cmd_merge(args: argparse.Namespace) -> int:
    merge_id = _change(args, lambda db, config, now, pending: manual_merge(db, args.winner, args.loser, config, now, pending))
    result = {"merge_id": merge_id, "winner": args.winner, "loser": args.loser}
    if args.json:
        print_json(result)
    else:
        print(f"merged {args.loser} into {args.winner} (merge #{merge_id}); the stores follow")
    return 0


def cmd_unmerge(args: argparse.Namespace) -> int:
    result = _change(args, lambda db, config, now, pending: unmerge(db, args.member_id, config, now, pending))
    if args.json:
        print_json(result)
    elif "restored" in result:
        print(f"unmerged {result['restored']} from {result['winner']} (merge #{result['merge_id']}); the stores follow")
    else:
        print(f"detached {result['detached']} from {result['from']} as new member {result['member_id']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    chunks = export_text(export_members(Central(args.db, create=False)), args.format)
    if args.output is None:
        try:
            for chunk in chunks:
                sys.stdout.write(chunk)
            sys.stdout.flush()
        except BrokenPipeError:  # `... | head`: the reader has what it wanted
            sys.stderr.close()
        return 0
    private_file(args.output)  # personal data: 0600 even when imported and called without `tenpo`'s umask
    with args.output.open("w", encoding="utf-8", newline="") as out:
        for chunk in chunks:
            out.write(chunk)
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    result = erase_member(Central(args.db, create=False), args.member_id, args.reason)
    if args.json:
        print_json(result)
    else:
        print(f"erased {result['member_id']} ({result['sources_erased']} source records); "
              f"member.erase sent to every store for {', '.join(result['member_ids'])}")  # fmt: skip
    return 0
