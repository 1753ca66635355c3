"""`tenpo provision ...`: the chain's certificates for a TLS broker with a client certificate per store."""

from __future__ import annotations

import argparse
from pathlib import Path

from tenpo.shared import pki, pki_crl
from tenpo.shared.channel_api import CHANNEL_CERT_PREFIX, channel_acl_lines, valid_channel
from tenpo.shared.errors import UserError
from tenpo.shared.protocol import valid_store_id
from tenpo.shared.terminal import safe_text


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    provision = subparsers.add_parser("provision", help="make the chain CA and broker/store/HQ certificates")
    commands = provision.add_subparsers(dest="provision_command", metavar="COMMAND")
    commands.required = True
    ca = commands.add_parser("ca", help="create the chain CA (once)")
    ca.add_argument("--dir", type=Path, required=True)
    ca.set_defaults(func=_ca)
    broker = commands.add_parser("broker", help="a server certificate for the broker")
    broker.add_argument("--dir", type=Path, required=True)
    broker.add_argument("--host", action="append", required=True, help="DNS name or IP (repeatable)")
    broker.add_argument("--key-group", metavar="GROUP",
                        help="write broker.key 0640 owned by GROUP (mosquitto: Mosquitto 2 reads it as that user)")
    broker.set_defaults(func=_broker)
    store = commands.add_parser("store", help="a client certificate whose CN is the store id")
    store.add_argument("store_id")
    store.add_argument("--dir", type=Path, required=True)
    store.set_defaults(func=_store)
    hq = commands.add_parser("hq", help="a client certificate for an aggregator or monitor (CN e.g. hq-aggregator-1)")
    hq.add_argument("name")
    hq.add_argument("--dir", type=Path, required=True)
    hq.set_defaults(func=lambda args: _print(pki.issue(args.dir, args.name)))
    # --- channel API clients (issue 18) ---
    channel = commands.add_parser("channel", help="a client certificate and ACL entries for a web shop or app backend")
    channel.add_argument("name", help="channel name: lower-case letters, digits, '-' and '_' (e.g. web, app)")
    channel.add_argument("--dir", type=Path, required=True)
    channel.add_argument("--acl", type=Path, help="the broker's ACL file to add the channel's lines to (default: DIR/acl)")
    channel.set_defaults(func=_channel)
    # --- revocation and renewal (issue 14) ---
    revoke = commands.add_parser("revoke", help="revoke an identity's certificates: add them to crl.pem (reload the broker)")
    revoke.add_argument("name", help="store id, HQ name or channel-NAME (the certificate CN)")
    revoke.add_argument("--dir", type=Path, required=True)
    revoke.add_argument("--serial", help="only this certificate (hex serial); default: every one issued to NAME")
    revoke.set_defaults(func=_revoke)
    renew = commands.add_parser("renew", help="a new key and certificate for an identity, before the old one expires")
    renew.add_argument("name", help="store id, HQ name or channel-NAME (the certificate CN)")
    renew.add_argument("--dir", type=Path, required=True)
    renew.add_argument("--days", type=int, default=825, help="validity of the new certificate (default 825)")
    renew.add_argument("--revoke-old", action="store_true", help="revoke the previous certificate at once")
    renew.set_defaults(func=_renew)


def _ca(args: argparse.Namespace) -> int:
    issued = pki.create_ca(args.dir)
    print(f"crl         {pki_crl.write_crl(args.dir)}")
    return _print(issued)


def _broker(args: argparse.Namespace) -> int:
    issued = pki.issue(args.dir, "broker", server_hosts=tuple(args.host), key_group=args.key_group)
    if not (args.dir / pki_crl.CRL_NAME).exists():  # a CA made before revocation existed
        print(f"crl         {pki_crl.write_crl(args.dir)}")
    return _print(issued)


def _identity(name: str) -> str:
    if not valid_store_id(name):
        raise UserError(f"name {safe_text(name)!r}: only letters, digits, '-' and '_' (1-32)")
    return name


def _revoke(args: argparse.Namespace) -> int:
    _identity(args.name)
    try:
        serial = None if args.serial is None else int(args.serial, 16)
    except ValueError:
        raise UserError(f"--serial {args.serial!r}: a hexadecimal serial number") from None
    fresh = pki_crl.revoke(args.dir, args.name, serial)
    path = args.dir / pki_crl.CRL_NAME
    print(f"revoked {len(fresh)} certificate(s) of {safe_text(args.name)}: {', '.join(f'{s:x}' for s in fresh) or 'none new'}")
    print(f"crl     {path}\nnext: copy it to the broker's crlfile and reload Mosquitto (systemctl reload mosquitto)")
    return 0


def _renew(args: argparse.Namespace) -> int:
    _identity(args.name)
    if args.name == "broker":  # a server certificate: its host names are given again
        raise UserError("the broker's certificate is renewed with `tenpo provision broker --host ...` (its names)")
    if args.days < 1:
        raise UserError("--days: at least 1")
    issued, previous = pki_crl.renew(args.dir, args.name, args.days)
    expiry = pki_crl.not_after(issued.cert.read_bytes())
    print(f"renewed {safe_text(args.name)}: valid until {expiry:%Y-%m-%d %H:%M} UTC")
    if args.revoke_old and previous is not None:
        pki_crl.revoke(args.dir, args.name, previous)
        print(f"revoked the previous certificate {previous:x} (reload Mosquitto)")
    return _print(issued)


def _store(args: argparse.Namespace) -> int:
    if not valid_store_id(args.store_id):
        raise UserError(f"store id {args.store_id!r}: only letters, digits, '-' and '_' (1-32)")
    return _print(pki.issue(args.dir, args.store_id))


def _channel(args: argparse.Namespace) -> int:
    """CN ``channel-NAME``; the ACL confines it to its own request and response topics (docs/channel.md)."""
    if not valid_channel(args.name):
        raise UserError(f"channel {safe_text(args.name)!r}: lower-case letters, digits, '-' and '_' (1-32)")
    acl = args.acl or args.dir / "acl"
    lines = channel_acl_lines(args.name)
    existing = acl.read_text() if acl.exists() else ""
    if lines[0] not in existing.splitlines():
        acl.write_text(existing + ("" if not existing or existing.endswith("\n") else "\n") + "\n".join(lines) + "\n")
        print(f"acl         {acl}: added {lines[0]} (reload the broker)")
    else:
        print(f"acl         {acl}: {lines[0]} already there")
    return _print(pki.issue(args.dir, f"{CHANNEL_CERT_PREFIX}{args.name}"))


def _print(issued: pki.Issued) -> int:
    print(f"certificate {issued.cert}\nkey         {issued.key}")
    return 0
