"""`tenpo provision ...`: the chain's certificates for a TLS broker with a client certificate per store."""

from __future__ import annotations

import argparse
from pathlib import Path

from tenpo.shared import pki
from tenpo.shared.errors import UserError
from tenpo.shared.protocol import valid_store_id


def register(subparsers: argparse._SubParsersAction) -> None:
    provision = subparsers.add_parser("provision", help="make the chain CA and broker/store/HQ certificates")
    commands = provision.add_subparsers(dest="provision_command", metavar="COMMAND")
    commands.required = True
    ca = commands.add_parser("ca", help="create the chain CA (once)")
    ca.add_argument("--dir", type=Path, required=True)
    ca.set_defaults(func=lambda args: _print(pki.create_ca(args.dir)))
    broker = commands.add_parser("broker", help="a server certificate for the broker")
    broker.add_argument("--dir", type=Path, required=True)
    broker.add_argument("--host", action="append", required=True, help="DNS name or IP (repeatable)")
    broker.set_defaults(func=lambda args: _print(pki.issue(args.dir, "broker", server_hosts=tuple(args.host))))
    store = commands.add_parser("store", help="a client certificate whose CN is the store id")
    store.add_argument("store_id")
    store.add_argument("--dir", type=Path, required=True)
    store.set_defaults(func=_store)
    hq = commands.add_parser("hq", help="a client certificate for an aggregator or monitor (CN e.g. hq-aggregator-1)")
    hq.add_argument("name")
    hq.add_argument("--dir", type=Path, required=True)
    hq.set_defaults(func=lambda args: _print(pki.issue(args.dir, args.name)))


def _store(args: argparse.Namespace) -> int:
    if not valid_store_id(args.store_id):
        raise UserError(f"store id {args.store_id!r}: only letters, digits, '-' and '_' (1-32)")
    return _print(pki.issue(args.dir, args.store_id))


def _print(issued: pki.Issued) -> int:
    print(f"certificate {issued.cert}\nkey         {issued.key}")
    return 0
