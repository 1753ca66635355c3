"""`tenpo edge member update MEMBER [--name N] [--kana K] [--phone P] [--email E] [--consent PURPOSE=yes|no]
[--present] --clerk C`: the clerk's profile edit (tenpo.edge.membership.edits)."""

from __future__ import annotations

import argparse

from tenpo.edge.clerk.accounts import record_action
from tenpo.edge.cli_support import clerk_flag, json_flag, open_store, require_clerk_flag, signed_in, with_config
from tenpo.edge.membership.edits import update_member
from tenpo.shared.errors import UserError
from tenpo.shared.terminal import print_json


def register(member_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    update = clerk_flag(with_config(member_commands.add_parser(
        "update", help="change a member's contact fields or consent (sent to HQ; the newest edit of a field wins)")))
    update.add_argument("member_id", metavar="MEMBER")
    for field in ("name", "kana", "phone", "email"):
        update.add_argument(f"--{field}")
    update.add_argument("--consent", action="append", default=[], metavar="PURPOSE=yes|no",
                        help="grant or withdraw one purpose (repeatable)")  # fmt: skip
    update.add_argument("--present", action="store_true",
                        help="the member is at the counter (needed to edit another store's member)")  # fmt: skip
    json_flag(update)
    update.set_defaults(func=cmd_member_update)


def _consent(items: list[str]) -> dict[str, bool]:
    consent: dict[str, bool] = {}
    for item in items:
        purpose, _, said = item.partition("=")
        if not purpose or said.lower() not in ("yes", "no"):
            raise UserError(f"--consent {item[:80]!r}: PURPOSE=yes or PURPOSE=no")
        consent[purpose] = said.lower() == "yes"
    return consent


def cmd_member_update(args: argparse.Namespace) -> int:
    require_clerk_flag(args, "changing a member's profile")
    consent = _consent(args.consent)
    _config, db = open_store(args)
    clerk = signed_in(args, db, "changing a member's profile")
    fields = {f: getattr(args, f) for f in ("name", "kana", "phone", "email")}
    event = update_member(db, args.member_id, clerk.clerk_id, fields=fields, consent=consent,
                          member_present=args.present)  # fmt: skip
    record_action(db, clerk, "edge member update", args.member_id)
    changed = sorted(k for k in ("name", "kana", "phone", "email") if getattr(event, k) is not None)
    changed += [f"consent.{p}" for p in sorted(event.consent or {})]
    if args.json:
        print_json({"member_id": args.member_id, "changed": changed, "sent_to_hq": True})
    else:
        print(f"member {args.member_id}: {', '.join(changed)} changed; sent to HQ")
    return 0
