"""`tenpo cloud dead-letters list|retry|discard` (issue 14): the HQ monitor's dead-letter actions from the
command line, with the same roles (retry and discard need an operator; the guard is in operators/cli.py)."""

from __future__ import annotations

import argparse
import datetime as dt

from tenpo.cloud.cli_support import db_flag, print_json
from tenpo.cloud.db import Central
from tenpo.cloud.hq import actions, queries
from tenpo.shared.terminal import safe_text


def register_cloud(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = db_flag(commands.add_parser("dead-letters", help="messages HQ could not apply: list, retry, discard"))
    group.add_argument("--all", action="store_true", help="closed ones too")
    group.add_argument("--json", action="store_true")
    group.set_defaults(func=cmd_list)
    sub = group.add_subparsers(dest="dead_letters_command", metavar="COMMAND")
    retry = db_flag(sub.add_parser("retry", help="apply a dead letter again (after a fix); an operator's"))
    retry.add_argument("id", type=int)
    retry.add_argument("--json", action="store_true")
    retry.set_defaults(func=cmd_retry)
    discard = db_flag(sub.add_parser("discard", help="close a dead letter that will never apply; an operator's"))
    discard.add_argument("id", type=int)
    discard.add_argument("--note", required=True, help="why (kept in the audit log)")
    discard.set_defaults(func=cmd_discard)


def cmd_list(args: argparse.Namespace) -> int:
    letters = queries.dead_letters(Central(args.db, create=False), include_closed=args.all)
    if args.json:
        print_json([{"id": d.id, "store_id": d.store_id, "status": d.status, "reason": d.reason,
                     "received_at": d.received_at} for d in letters])  # fmt: skip
        return 0
    for d in letters:
        when = dt.datetime.fromtimestamp(d.received_at).strftime("%Y-%m-%d %H:%M")
        print(f"#{d.id:<5} {when}  {safe_text(str(d.store_id or '-')):<8} {d.status:<9} {safe_text(d.reason)}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    outcome = actions.retry_dead_letter(Central(args.db, create=False), args.id, actor=getattr(args, "by", "operator"))
    if args.json:
        print_json({"id": outcome.dead_letter_id, "result": outcome.result, "detail": outcome.detail,
                    "applied_events": outcome.applied_events})  # fmt: skip
    else:
        print(f"#{outcome.dead_letter_id}: {outcome.result} - {safe_text(outcome.detail)}")
    return 0 if outcome.closed else 1


def cmd_discard(args: argparse.Namespace) -> int:
    actions.discard_dead_letter(Central(args.db, create=False), args.id, args.note, actor=getattr(args, "by", "operator"))
    print(f"#{args.id}: discarded")
    return 0
