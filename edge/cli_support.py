"""What every `tenpo edge ...` command shares: the ``--config``, ``--json`` and ``--clerk`` flags, JSON
output, reading a PIN, and opening the store's replica. The edge group and the area CLIs (checkout,
clerk, inspection, beacons) import it, so no area CLI has to import the group that registers it.

Roles: a command that moves money or stock, or reads or changes personal data, takes ``--clerk ID``;
the PIN is asked without echo on a terminal, or read from the first line of standard input (scripts).
It goes through the same sign-in as the clerk terminal (hash, logged attempt, lockout after wrong PINs).
Which command needs which role: docs/roles.md.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable
from typing import TextIO

import sqlite_utils

from tenpo.edge import db as edge_db
from tenpo.edge.clerk.accounts import Action, Clerk, Role, allowed, check_clerk_id, sign_in
from tenpo.edge.config import StoreConfig, load_config
from tenpo.shared.errors import UserError
from tenpo.shared.terminal import print_json as print_json  # re-exported for the area CLIs

CLERK = "clerk"  # any signed-in clerk or manager
MANAGER = "manager"


class ClerkRequired(UserError):
    """A command that needs a signed-in clerk was run without ``--clerk``: bad usage, exit status 2."""

    exit_status = 2


def with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--config`` as every edge command takes it."""
    parser.add_argument("--config", help="store config TOML (default: $TENPO_CONFIG)")
    return parser


def json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")



def open_existing(config: StoreConfig) -> sqlite_utils.Database:
    # Only `init` and `run` create the replica: a mistyped path must not leave an empty one behind.
    return edge_db.connect(config.database, create=False)


def open_store(args: argparse.Namespace) -> tuple[StoreConfig, sqlite_utils.Database]:
    """The config and the migrated replica for an edge command."""
    config = load_config(args.config)
    return config, open_existing(config)


# ---------------------------------------------------------------------------- roles


def clerk_flag(parser: argparse.ArgumentParser, role: str = CLERK) -> argparse.ArgumentParser:
    """``--clerk ID`` on a command that needs a signed-in clerk (or, with role="manager", a manager)."""
    who = "a manager's id" if role == MANAGER else "your clerk id"
    parser.add_argument("--clerk", metavar="ID", help=f"{who} (required); the PIN is asked without echo, "
                        "or read from the first line of stdin")  # fmt: skip
    parser.set_defaults(needs_role=role)
    return parser


def read_pin(stdin: TextIO, ask: Callable[[str], str] = getpass.getpass, prompt: str = "PIN: ",
             confirm: bool = True) -> str:  # fmt: skip
    """Without echo on a terminal (twice with ``confirm``); one line from stdin otherwise (scripts, provisioning).

    Each call reads exactly one line from a pipe, so a command needing two PINs (a manager's, then a new
    clerk's) reads them from the first and the second line.
    """
    if not stdin.isatty():
        line = stdin.readline()
        if not line:
            raise UserError(f"{prompt.rstrip(': ')}: expected on the next line of stdin")
        return line.rstrip("\r\n")
    first = ask(prompt)
    if confirm and ask(f"{prompt.rstrip(': ')} again: ") != first:
        raise UserError(f"{prompt.rstrip(': ')}: the two entries differ")
    return first


def require_clerk_flag(args: argparse.Namespace, doing: str) -> str:
    """The ``--clerk`` id, or ClerkRequired naming what the command does (checked before anything is opened)."""
    clerk_id = getattr(args, "clerk", None)
    role = getattr(args, "needs_role", CLERK)
    if not clerk_id:
        who = "a manager" if role == MANAGER else "a clerk"
        raise ClerkRequired(f"{doing} needs {who}: add --clerk ID (the PIN is asked, or read from stdin's first line)")
    return check_clerk_id(clerk_id)


def signed_in(args: argparse.Namespace, db: sqlite_utils.Database, doing: str, action: Action | None = None,
              stdin: TextIO | None = None, now: float | None = None) -> Clerk:  # fmt: skip
    """Sign in the ``--clerk`` of this command with its PIN; a wrong PIN counts towards the lockout.

    ``action`` (or ``needs_role`` set by clerk_flag) decides whether a manager is needed; a clerk who is
    not one is refused with one line, after the PIN (so the refusal does not tell who is a manager).
    """
    clerk_id = require_clerk_flag(args, doing)
    pin = read_pin(stdin or sys.stdin, prompt=f"PIN for {clerk_id}: ", confirm=False)
    clerk = sign_in(db, clerk_id, pin, time.time() if now is None else now)
    manager_needed = getattr(args, "needs_role", CLERK) == MANAGER or (action is not None
                                                                       and not allowed(Role.CLERK, action))
    if manager_needed and not clerk.is_manager:
        raise UserError(f"{doing}: needs a manager; {clerk.clerk_id} ({clerk.name}) is a clerk")
    if clerk.short_pin:
        print(f"tenpo: clerk {clerk.clerk_id}: the PIN is shorter than the minimum now in force; ask a manager to "
              "reset it (tenpo edge clerk add ID --replace)", file=sys.stderr)  # fmt: skip
    return clerk
