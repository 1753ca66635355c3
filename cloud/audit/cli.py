"""`tenpo cloud audit verify | list --member ID` (issue 14): the chain checked, and who looked at a customer."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from tenpo.cloud.audit.chain import verify_chain, who_looked
from tenpo.cloud.cli_support import db_flag, print_json
from tenpo.cloud.db import Central
from tenpo.shared.errors import UserError
from tenpo.shared.ids import is_id
from tenpo.shared.terminal import safe_text


def register_cloud(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser("audit", help="HQ's audit log (hash-chained, append-only): verify, list")
    sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND")
    sub.required = True
    verify = db_flag(sub.add_parser(
        "verify", help="check the audit chain: exit 1 naming the first changed, removed or inserted row"))  # fmt: skip
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)
    listing = db_flag(sub.add_parser(
        "list", help="who looked at this customer: clerks' views and exports in the stores, HQ operators' views,"
                     " exports, merges and erasures (APPI disclosure requests)"))  # fmt: skip
    listing.add_argument("--member", required=True, metavar="ID")
    listing.add_argument("--limit", type=int, default=1000, metavar="N")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)


def cmd_verify(args: argparse.Namespace) -> int:
    verdict = verify_chain(Central(args.db, create=False))
    if args.json:
        print_json({"ok": verdict.ok, "rows": verdict.rows, "head_seq": verdict.head_seq, "head_hash": verdict.head_hash,
                    "broken_row": verdict.broken_row, "broken_seq": verdict.broken_seq, "problem": verdict.problem})
    elif verdict.ok:
        print(f"audit chain ok: {verdict.rows} rows, head #{verdict.head_seq} {verdict.head_hash}")
    else:
        where = f"row id {verdict.broken_row}" if verdict.broken_row is not None else "the end of the chain"
        print(f"audit chain BROKEN at {where} (position {verdict.broken_seq}): {verdict.problem}", file=sys.stderr)
    return 0 if verdict.ok else 1


def cmd_list(args: argparse.Namespace) -> int:
    member_id = args.member
    if not is_id(member_id):
        raise UserError(f"--member {safe_text(member_id)!r}: not a member id (letters, digits, '._:-')")
    rows = who_looked(Central(args.db, create=False), member_id, max(1, args.limit))
    if args.json:
        print_json({"member_id": member_id, "entries": rows})
        return 0
    print(f"{len(rows)} audit entries for {member_id} (and ids merged with it), newest first:")
    for r in rows:
        when = dt.datetime.fromtimestamp(r["at"]).strftime("%Y-%m-%d %H:%M:%S")
        who = f"clerk {r['clerk']} at {r['where']}" if r["clerk"] else r["actor"]
        print(f"  {when}  {safe_text(str(r['action'])):<20} {safe_text(who)}  {safe_text(str(r['member_id'] or 'all members'))}")
    return 0
