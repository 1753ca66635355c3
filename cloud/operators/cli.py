"""`tenpo cloud operator add|list|disable|totp|cert`, and ``--operator NAME`` on the commands that change
things at HQ (roles: tenpo.cloud.operators.roles; docs/operators.md).

Secrets are read without echo on a terminal, or one per line from standard input (scripts): the
password on the first line, the TOTP code on the second (admins, and anyone who enrolled one).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from tenpo.cloud.audit.chain import ACTING_OPERATOR
from tenpo.cloud.cli_support import db_flag, print_json
from tenpo.cloud.db import Central
from tenpo.cloud.operators import accounts
from tenpo.cloud.operators.accounts import Operator, sign_in
from tenpo.cloud.operators.roles import ROLES
from tenpo.shared.errors import UserError

# (command path under `tenpo cloud`, action): the commands that change things, and the role each needs.
GUARDED: tuple[tuple[tuple[str, ...], str], ...] = (
    (("members", "show"), "member.show"),  # a view of personal data: audited with the operator's name
    (("members", "merge"), "member.merge"),
    (("members", "unmerge"), "member.unmerge"),
    (("members", "erase"), "member.erase"),
    (("members", "export"), "member.export"),
    (("members", "review", "accept"), "review.accept"),
    (("members", "review", "reject"), "review.reject"),
    (("conflicts", "resolve"), "conflict.resolve"),
    (("dead-letters", "retry"), "dead_letter.retry"),
    (("dead-letters", "discard"), "dead_letter.discard"),
    (("authority", "set"), "settings.change"),  # what a store may say (docs/authority.md)
    (("members", "rules", "set"), "settings.change"),  # what every counter requires at registration
)


def read_secret(prompt: str, stdin: TextIO | None = None, ask: Callable[[str], str] = getpass.getpass) -> str:
    """Without echo on a terminal; the next line of stdin otherwise."""
    stream = stdin or sys.stdin
    if stream.isatty():
        return ask(prompt)
    line = stream.readline()
    if not line:
        raise UserError(f"{prompt.rstrip(': ')}: expected on the next line of stdin")
    return line.rstrip("\r\n")


def credentials(name: str, db: Central) -> tuple[str, str | None]:
    """The password, then (when the account has TOTP) the code: asked on a terminal, or two lines of stdin."""
    password = read_secret(f"password for {name}: ")
    needs_code = db.scalar("SELECT totp_secret IS NOT NULL OR role = 'admin' FROM operators WHERE name = ?", (name,))
    code = read_secret(f"TOTP code for {name}: ") if needs_code else None
    return password, code


def signed_in_operator(db: Central, name: str | None, action: str, doing: str,
                       certificate: tuple[Path, Path] | None = None) -> Operator:  # fmt: skip
    """Sign ``name`` in (password, or the registered client certificate and its key; then the TOTP code) and
    check the role allows ``action``; UserError with the reason otherwise."""
    if not name:
        raise UserError(f"{doing} needs a signed-in operator: add --operator NAME (the password is asked, or read "
                        "from stdin's first line; an admin's TOTP code from the second)")  # fmt: skip
    if certificate is not None:
        pems = _read_pems(*certificate)
        needs_code = db.scalar("SELECT totp_secret IS NOT NULL OR role = 'admin' FROM operators WHERE name = ?", (name,))
        code = read_secret(f"TOTP code for {name}: ") if needs_code else None
        operator = sign_in(db, name, None, code, via="cli-cert", certificate=pems)
    else:
        password, code = credentials(name, db)
        operator = sign_in(db, name, password, code, via="cli")
    operator.require(action)
    return operator


def _read_pems(cert: Path | None, key: Path | None) -> tuple[bytes, bytes]:
    if cert is None or key is None:
        raise UserError("--operator-cert and --operator-key go together")
    try:
        return cert.read_bytes(), key.read_bytes()
    except OSError as exc:
        raise UserError(f"{exc.filename}: cannot read ({exc.strerror})") from None


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps no public accessor for a parser's subcommands
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def guard_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[str]:
    """Add ``--operator NAME`` to each guarded command and sign the operator in before it runs; returns
    the commands guarded (a command an area has not registered is skipped)."""
    done = []
    for path, action in GUARDED:
        parser: argparse.ArgumentParser | None = commands.choices.get(path[0])
        for word in path[1:]:
            parser = _subparsers(parser).get(word) if parser is not None else None
        if parser is None:
            continue
        parser.add_argument("--operator", metavar="NAME", help="who does this (required): password asked without "
                            "echo, or read from stdin's first line (an admin's TOTP code from the second)")  # fmt: skip
        parser.add_argument("--operator-cert", type=Path, metavar="PEM", help="sign in with this client certificate"
                            " (registered by `tenpo cloud operator cert`) instead of the password")  # fmt: skip
        parser.add_argument("--operator-key", type=Path, metavar="PEM", help="its private key (proves possession)")
        inner = parser.get_default("func")
        parser.set_defaults(func=_guarded(inner, action, " ".join(path)))
        done.append(" ".join(path))
    return done


def _guarded(inner: Callable[[argparse.Namespace], int], action: str, doing: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        db = Central(args.db, create=False)
        try:
            cert = (args.operator_cert, args.operator_key) if args.operator_cert or args.operator_key else None
            operator = signed_in_operator(db, args.operator, action, f"tenpo cloud {doing}", cert)
        finally:
            db.close()
        if hasattr(args, "by"):
            args.by = f"op:{operator.name}"
        token = ACTING_OPERATOR.set(operator.name)  # `audit` records the operator, not a generic actor
        try:
            return inner(args)
        finally:
            ACTING_OPERATOR.reset(token)

    return run


# ---------------------------------------------------------------------------- operator accounts


def register_cloud(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("operator", help="HQ operator accounts: add, list, disable, totp, cert")
    sub = group.add_subparsers(dest="operator_command", metavar="COMMAND")
    sub.required = True
    add = db_flag(sub.add_parser("add", help="a new account; its password is asked twice, or read from stdin "
                                 "(after the admin's own password and code)"))  # fmt: skip
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--operator", metavar="ADMIN", help="the admin adding it (required once an admin exists)")
    add.set_defaults(func=cmd_add)
    listing = db_flag(sub.add_parser("list", help="accounts, roles, TOTP enrolled, locked"))
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)
    disable = db_flag(sub.add_parser("disable", help="an account can no longer sign in"))
    disable.add_argument("name")
    disable.add_argument("--operator", metavar="ADMIN", required=True)
    disable.set_defaults(func=cmd_disable)
    totp = db_flag(sub.add_parser("totp", help="enrol TOTP: asks NAME's password (and current code when re-enrolling);"
                                  " prints the otpauth:// URI and the secret once"))  # fmt: skip
    totp.add_argument("name")
    totp.set_defaults(func=cmd_totp)
    cert = db_flag(sub.add_parser("cert", help="register NAME's client certificate (sign in with --cert/--key)"))
    cert.add_argument("name")
    cert.add_argument("--cert", type=Path, required=True, metavar="PEM")
    cert.add_argument("--operator", metavar="ADMIN", required=True)
    cert.set_defaults(func=cmd_cert)


def _admin(db: Central, name: str | None, doing: str) -> str:
    return f"op:{signed_in_operator(db, name, 'operator.manage', doing).name}"


def _new_password() -> str:
    first = read_secret("new password: ")
    if sys.stdin.isatty() and getpass.getpass("new password again: ") != first:
        raise UserError("password: the two entries differ")
    return first


def cmd_add(args: argparse.Namespace) -> int:
    db = Central(args.db, create=False)
    if accounts.has_active_admin(db) or args.operator:
        by = _admin(db, args.operator, "adding an operator")
    elif args.role != "admin":
        raise UserError("no admin yet: the first account must be an admin (--role admin)")
    else:
        by = "bootstrap"
    accounts.add_operator(db, args.name, args.role, _new_password(), by=by)
    tail = f"; enrol TOTP before signing in: tenpo cloud operator totp {args.name}" if args.role == "admin" else ""
    print(f"operator {args.name} added ({args.role}){tail}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = accounts.list_operators(Central(args.db, create=False))
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        state = "active" if r["active"] else "disabled"
        print(f"{r['name']:<20} {r['role']:<9} {state:<9} totp={'yes' if r['totp'] else 'no':<4}"
              f" cert={'yes' if r['cert_sha256'] else 'no'}")  # fmt: skip
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    db = Central(args.db, create=False)
    accounts.disable_operator(db, args.name, _admin(db, args.operator, "disabling an operator"))
    print(f"operator {args.name} disabled")
    return 0


def cmd_totp(args: argparse.Namespace) -> int:
    db = Central(args.db, create=False)
    enrolled = db.scalar("SELECT totp_secret IS NOT NULL FROM operators WHERE name = ?", (args.name,))
    password = read_secret(f"password for {args.name}: ")
    code = read_secret(f"current TOTP code for {args.name}: ") if enrolled else None
    _first_factor_only(db, args.name, password, code)
    secret, uri = accounts.enrol_totp(db, args.name)
    print(uri)
    print(f"secret: {secret}  (shown once: add it to an authenticator app now)", file=sys.stderr)
    return 0


def _first_factor_only(db: Central, name: str, password: str, code: str | None) -> None:
    """Enrolment proves the password (and the current code when one is enrolled); an admin without TOTP may
    enrol, which is the only way such an admin can ever sign in."""
    try:
        sign_in(db, name, password, code, via="totp-enrol")
    except accounts.SignInRefused as exc:
        if "without TOTP" not in str(exc):
            raise


def cmd_cert(args: argparse.Namespace) -> int:
    db = Central(args.db, create=False)
    by = _admin(db, args.operator, "registering a certificate")
    try:
        pem = args.cert.read_bytes()
    except OSError as exc:
        raise UserError(f"--cert {args.cert}: cannot read ({exc.strerror})") from None
    print(f"certificate {accounts.register_certificate(db, args.name, pem, by)} registered for {args.name}")
    return 0
