"""`tenpo cloud conflicts [--json]` and `tenpo cloud conflicts resolve ID --action ACTION [--note N]`."""

from __future__ import annotations

import argparse
import json
import time

from tenpo.cloud.cli_support import db_flag
from tenpo.cloud.db import Central
from tenpo.cloud.sales import conflicts


def register_cloud(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `conflicts` (list, resolve) to the `tenpo cloud` group."""
    listing = db_flag(commands.add_parser(
        "conflicts", help="open reconciliation conflicts (points below zero, stock oversold)",
        description="List open conflicts; `resolve` settles one by an explicit ledger entry.",
    ))  # fmt: skip
    listing.add_argument("--all", action="store_true", help="resolved ones too")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_conflicts)
    sub = listing.add_subparsers(dest="conflicts_command", metavar="COMMAND")
    resolve = db_flag(sub.add_parser(
        "resolve", help="resolve a conflict by an explicit entry",
        description="points: write-off (adjustment to zero) or accept; stock: adjust (correcting entry to zero) "
        "or accept. History is never changed; the audit log records the decision.",
    ))  # fmt: skip
    resolve.add_argument("id")
    resolve.add_argument("--action", required=True, choices=conflicts.RESOLUTIONS)
    resolve.add_argument("--note", help="why (kept with the resolution and in the audit log)")
    resolve.add_argument("--by", default="operator", help="who decides (audit log)")
    resolve.add_argument("--json", action="store_true")
    resolve.set_defaults(func=cmd_resolve)


def cmd_conflicts(args: argparse.Namespace) -> int:
    db = Central(args.db, create=False)
    rows = conflicts.list_all(db) if args.all else conflicts.list_open(db)
    if args.json:
        print(json.dumps([c.as_json() for c in rows], ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print("no open conflicts" if not args.all else "no conflicts")
        return 0
    for c in rows:
        print(_line(c))
        for entry in c.detail.get("entries", [])[-6:]:
            what = entry.get("kind") or entry.get("reason")
            print(f"      {entry['store_id']:<8} seq {entry['store_seq']:>6} {entry['delta']:>+8,} {what} "
                  f"{entry.get('ref') or ''}")
    return 0


def _line(c: conflicts.Conflict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.detected_at))
    what = "balance" if c.kind == conflicts.POINTS else "on hand"
    state = c.status if c.status == "open" else f"{c.status}: {c.action}"
    return f"#{c.id:<4} {c.kind:<15} {c.subject:<24} {what} {c.level:>+7,}  store {c.store_id}  {when}  [{state}]"


def cmd_resolve(args: argparse.Namespace) -> int:
    resolved = conflicts.resolve(Central(args.db, create=False), args.id, args.action, note=args.note, actor=args.by)
    if args.json:
        print(json.dumps(resolved.as_json(), ensure_ascii=False, indent=2))
    else:
        entry = (resolved.resolution or {}).get("entry")
        posted = f"; posted {entry['ledger']} {entry['delta']:+,} ({entry['ref']})" if entry else ""
        print(f"conflict {resolved.id} resolved: {resolved.action}{posted}")
    return 0
