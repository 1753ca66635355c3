"""`tenpo clerk` (the terminal app) and `tenpo edge clerk add|list|unlock` (accounts).

The accounts commands need a manager (``--clerk ID`` and that manager's PIN), except the very first
manager of a store: while the store has no active manager, `edge clerk add` runs without ``--clerk``
(bootstrap, e.g. right after `tenpo edge init`).
"""

from __future__ import annotations

import argparse
import json
import sys

from tenpo.edge.clerk.accounts import Action, add_clerk, has_manager, list_clerks, min_pin_length, record_action, unlock
from tenpo.edge.clerk.data import ClerkData
from tenpo.edge.cli_support import MANAGER, clerk_flag, open_store, read_pin, require_clerk_flag, signed_in, with_config
from tenpo.edge.config import load_config
from tenpo.edge.db import must_exist


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Top-level `tenpo clerk`: the clerk terminal on this store's database."""
    clerk = with_config(subparsers.add_parser(
        "clerk", help="the clerk terminal (members, checkout, stock, dock, arrivals)",
        description="A keyboard-driven terminal app on the store's SQLite file; works with the agent down. "
        "Sign in with a clerk id and PIN made by `tenpo edge clerk add`.",
    ))  # fmt: skip
    clerk.set_defaults(func=cmd_terminal)


def register_edge(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`tenpo edge clerk ...`: clerk accounts."""
    clerk = commands.add_parser("clerk", help="clerk accounts for the clerk terminal")
    clerk_commands = clerk.add_subparsers(dest="clerk_command", metavar="COMMAND")
    clerk_commands.required = True
    add = clerk_flag(with_config(clerk_commands.add_parser(
        "add", help="add a clerk (asks for the PIN twice, without echo); a manager's --clerk once one exists",
        description="Add a clerk. On a terminal the PIN is asked twice without echo; when stdin is not a "
        "terminal (scripts), the first line of stdin is the PIN, e.g. `printf '902113\\n' | tenpo edge clerk add ...`. "
        "Once the store has a manager, a manager must run it: --clerk ID, whose PIN comes first (the first line "
        "of stdin), then the new clerk's PIN (the second line). PINs are 6 to 12 digits ([clerks] min_pin_length "
        "may ask for more), not one digit repeated and not a run like 123456.",
    )), MANAGER)  # fmt: skip
    add.add_argument("clerk_id", metavar="ID")
    add.add_argument("--name", required=True)
    add.add_argument("--role", choices=("clerk", "manager"), default="clerk")
    add.add_argument("--replace", action="store_true", help="reset an existing clerk's name, role and PIN")
    add.set_defaults(func=cmd_add)
    listing = clerk_flag(with_config(clerk_commands.add_parser("list", help="clerks, roles and lockouts (a manager)")),
                         MANAGER)  # fmt: skip
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    listing.set_defaults(func=cmd_list)
    unlock = clerk_flag(with_config(clerk_commands.add_parser("unlock", help="lift a clerk's lockout after wrong PINs "
                                                              "(a manager)")), MANAGER)  # fmt: skip
    unlock.add_argument("clerk_id", metavar="ID")
    unlock.set_defaults(func=cmd_unlock)


def cmd_add(args: argparse.Namespace) -> int:
    doing = "adding or resetting a clerk"
    config, db = open_store(args)
    minimum = min_pin_length(config.section("clerks"), f"config {config.path}: [clerks]")
    manager = None
    if args.clerk or has_manager(db):  # the store's first manager is made without one (bootstrap)
        require_clerk_flag(args, doing)
        manager = signed_in(args, db, doing, Action.CLERK_ADMIN)
    pin = read_pin(sys.stdin, prompt=f"PIN for {args.clerk_id}: " if manager else "PIN: ")
    clerk = add_clerk(db, args.clerk_id, args.name, args.role, pin, replace=args.replace, min_length=minimum)
    if manager is not None:
        record_action(db, manager, "edge clerk add", f"{clerk.clerk_id} {clerk.role.value}")
    elif not clerk.is_manager:
        print("tenpo: note: this store has no manager yet; add one (--role manager) before anyone else",
              file=sys.stderr)  # fmt: skip
    print(f"clerk {clerk.clerk_id} ({clerk.name}, {clerk.role.value}) ready")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    require_clerk_flag(args, "the list of clerks")
    _config, db = open_store(args)
    signed_in(args, db, "the list of clerks", Action.CLERK_ADMIN)
    clerks = list_clerks(db)
    if args.json:
        print(json.dumps(clerks, ensure_ascii=False, indent=2))
        return 0
    for c in clerks:
        locked = " locked" if c["locked_until"] else ""
        print(f"{c['clerk_id']:<10} {c['role']:<8} {c['name']}{locked}")
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    require_clerk_flag(args, "lifting a lockout")
    _config, db = open_store(args)
    manager = signed_in(args, db, "lifting a lockout", Action.CLERK_ADMIN)
    unlock(db, args.clerk_id)
    record_action(db, manager, "edge clerk unlock", args.clerk_id)
    print(f"clerk {args.clerk_id} unlocked")
    return 0


def cmd_terminal(args: argparse.Namespace) -> int:
    from tenpo.edge.clerk.app import ClerkApp  # Textual loads only when the terminal opens, not for every edge command

    config = load_config(args.config)
    must_exist(config.database)  # the terminal sells into the replica `tenpo edge init` made, never a new one
    ClerkApp(ClerkData(config)).run()
    return 0
