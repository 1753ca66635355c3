"""`tenpo edge audit verify`: walk the store's personal-data audit chain (issue 14, edge/audit_chain.py)."""

from __future__ import annotations

import argparse
import sys

from tenpo.edge.audit_chain import verify_chain
from tenpo.edge.cli_support import json_flag, open_store, print_json, with_config


def register_edge(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser("audit", help="the personal-data audit log (hash-chained, append-only)")
    sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND")
    sub.required = True
    verify = with_config(sub.add_parser(
        "verify", help="check the audit chain: exit 1 naming the first changed, removed or inserted row"))  # fmt: skip
    json_flag(verify)
    verify.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    _config, db = open_store(args)
    verdict = verify_chain(db)
    if args.json:
        print_json({"ok": verdict.ok, "rows": verdict.rows, "head_seq": verdict.head_seq, "head_hash": verdict.head_hash,
                    "broken_row": verdict.broken_row, "broken_seq": verdict.broken_seq, "problem": verdict.problem})
    elif verdict.ok:
        print(f"audit chain ok: {verdict.rows} rows, head #{verdict.head_seq} {verdict.head_hash}")
    else:
        print(f"audit chain BROKEN at row id {verdict.broken_row} (position {verdict.broken_seq}): {verdict.problem};"
              f" {verdict.rows - 1} rows before it hold", file=sys.stderr)  # fmt: skip
    return 0 if verdict.ok else 1
