"""`tenpo cloud authority list|show|set`: what store authority refused, and its limits (docs/authority.md)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt

from tenpo.cloud.authority import AuthorityConfig
from tenpo.cloud.authority_check import config, recent_refusals, save_config
from tenpo.cloud.cli_support import db_flag, print_json
from tenpo.cloud.db import Central
from tenpo.shared.errors import UserError
from tenpo.shared.ids import is_store_id
from tenpo.shared.terminal import safe_text

_SETTINGS = {f.name: f.name.replace("_", "-") for f in dataclasses.fields(AuthorityConfig)}


def register_cloud(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    authority = commands.add_parser("authority", help="store authority: what HQ refused a store, and the limits")
    sub = authority.add_subparsers(dest="authority_command", required=True)
    listing = db_flag(sub.add_parser("list", help="refused events, newest first"))
    listing.add_argument("--store", help="only this store's")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    listing.set_defaults(func=cmd_list)
    show = db_flag(sub.add_parser("show", help="the limits in force"))
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(func=cmd_show)
    change = db_flag(sub.add_parser("set", help="change limits (the others keep their value)"))
    for name, flag in _SETTINGS.items():
        change.add_argument(f"--{flag}", dest=name, type=int, metavar="N")
    change.add_argument("--by", default="cli", help="who changes them (recorded)")
    change.set_defaults(func=cmd_set)


def cmd_list(args: argparse.Namespace) -> int:
    if args.store is not None and not is_store_id(args.store):
        raise UserError(f"--store {safe_text(args.store)!r} is not a store id")
    db = Central(args.db, create=False)
    rows = recent_refusals(db, max(1, args.limit), args.store)
    found = [{"at": at, "store_id": store, "rule": rule, "event_seq": seq, "detail": detail}
             for at, store, rule, seq, detail in rows]  # fmt: skip
    if args.json:
        print_json(found)
        return 0
    if not found:
        print("no event refused by store authority")
    for r in found:
        when = dt.datetime.fromtimestamp(r["at"]).strftime("%Y-%m-%d %H:%M:%S")
        print(safe_text(f"{when}  {r['store_id']}  event {r['event_seq']}  {r['rule']}: {r['detail']}"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    current = dataclasses.asdict(config(Central(args.db, create=False)))
    if args.json:
        print_json(current)
    else:
        for name, value in current.items():
            print(f"{_SETTINGS[name]}: {value}")
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    db = Central(args.db, create=False)
    changes = {name: getattr(args, name) for name in _SETTINGS if getattr(args, name) is not None}
    if not changes:
        raise UserError(f"nothing to set: give one of {', '.join('--' + f for f in _SETTINGS.values())}")
    bad = [f"--{_SETTINGS[name]}" for name, value in changes.items() if value < 1]
    if bad:
        raise UserError(f"{', '.join(bad)}: must be a whole number of at least 1")
    settings = dataclasses.replace(config(db), **changes)
    save_config(db, settings, safe_text(args.by))
    for name, value in changes.items():
        print(f"{_SETTINGS[name]}: {value}")
    return 0
