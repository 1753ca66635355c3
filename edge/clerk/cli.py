"""`tenpo clerk` (the terminal app) and `tenpo edge clerk add|list|unlock` (accounts)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from typing import TextIO

from tenpo.edge.clerk.accounts import add_clerk, list_clerks, unlock
from tenpo.edge.clerk.data import ClerkData
from tenpo.edge.cli_support import open_store, with_config
from tenpo.edge.config import load_config
from tenpo.edge.db import must_exist
from tenpo.shared.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Top-level `tenpo clerk`: the clerk terminal on this store's database."""
    clerk = with_config(subparsers.add_parser(
        "clerk", help="the clerk terminal (members, checkout, stock, dock, arrivals)",
        description="A keyboard-driven terminal app on the store's SQLite file; works with the agent down. "
        "Sign in with a clerk id and PIN made by `tenpo edge clerk add`.",
    ))  # fmt: skip
    clerk.set_defaults(func=cmd_terminal)


def register_edge(commands: argparse._SubParsersAction) -> None:
    """`tenpo edge clerk ...`: clerk accounts."""
    clerk = commands.add_parser("clerk", help="clerk accounts for the clerk terminal")
    clerk_commands = clerk.add_subparsers(dest="clerk_command", metavar="COMMAND")
    clerk_commands.required = True
    add = with_config(clerk_commands.add_parser(
        "add", help="add a clerk (asks for the PIN twice, without echo)",
        description="Add a clerk. On a terminal the PIN is asked twice without echo; when stdin is not a "
        "terminal (scripts), the first line of stdin is the PIN, e.g. `printf '2468\\n' | tenpo edge clerk add ...`. "
        "PINs are 4 to 12 digits, not one digit repeated and not a run like 1234.",
    ))  # fmt: skip
    add.add_argument("clerk_id", metavar="ID")
    add.add_argument("--name", required=True)
    add.add_argument("--role", choices=("clerk", "manager"), default="clerk")
    add.add_argument("--replace", action="store_true", help="reset an existing clerk's name, role and PIN")
    add.set_defaults(func=cmd_add)
    listing = with_config(clerk_commands.add_parser("list", help="clerks, roles and lockouts"))
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    listing.set_defaults(func=cmd_list)
    unlock = with_config(clerk_commands.add_parser("unlock", help="lift a clerk's lockout after wrong PINs"))
    unlock.add_argument("clerk_id", metavar="ID")
    unlock.set_defaults(func=cmd_unlock)


def read_pin(stdin: TextIO, ask: Callable[[str], str] = getpass.getpass) -> str:
    """Twice without echo on a terminal; one line from stdin otherwise (scripts, provisioning)."""
    if not stdin.isatty():
        line = stdin.readline()
        if not line:
            raise UserError("PIN: expected on the first line of stdin")
        return line.rstrip("\r\n")
    first = ask("PIN: ")
    if ask("PIN again: ") != first:
        raise UserError("PIN: the two entries differ")
    return first


def cmd_add(args: argparse.Namespace) -> int:
    pin = read_pin(sys.stdin)
    _config, db = open_store(args)
    clerk = add_clerk(db, args.clerk_id, args.name, args.role, pin, replace=args.replace)
    print(f"clerk {clerk.clerk_id} ({clerk.name}, {clerk.role.value}) ready")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    _config, db = open_store(args)
    clerks = list_clerks(db)
    if args.json:
        print(json.dumps(clerks, ensure_ascii=False, indent=2))
        return 0
    for c in clerks:
        locked = " locked" if c["locked_until"] else ""
        print(f"{c['clerk_id']:<10} {c['role']:<8} {c['name']}{locked}")
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    _config, db = open_store(args)
    unlock(db, args.clerk_id)
    print(f"clerk {args.clerk_id} unlocked")
    return 0


def cmd_terminal(args: argparse.Namespace) -> int:
    from tenpo.edge.clerk.app import ClerkApp  # Textual loads only when the terminal opens, not for every edge command

    config = load_config(args.config)
    must_exist(config.database)  # the terminal sells into the replica `tenpo edge init` made, never a new one
    ClerkApp(ClerkData(config)).run()
    return 0
