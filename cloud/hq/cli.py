"""`tenpo hq`: the HQ sync monitor in the terminal, or served to a browser with textual-serve."""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tenpo.cloud.cli_support import db_flag
from tenpo.cloud.db import Central
from tenpo.cloud.hq.config import load_monitor_config
from tenpo.cloud.hq.data import HqData
from tenpo.cloud.hq.serve import listen_context, tls_server
from tenpo.shared.errors import MissingExtra
from tenpo.shared.mqtt import TlsFiles, parse_broker_url

if TYPE_CHECKING:
    from tenpo.cloud.hq.app import HqApp

DEFAULT_PORT = 8000
WILDCARD_HOSTS = ("0.0.0.0", "::", "", "*")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hq = subparsers.add_parser(
        "hq", help="the HQ sync monitor (Textual): every store's link, backlog, dead letters and conflicts",
        description="Watch every store: online/offline from birth and Will, backlog, lag, dead letters, conflicts. "
                    "Keys: Enter store detail, d dead letters, c conflicts, a attention-first order, s screenshot, "
                    "Ctrl+P every command, q quit.",
    )  # fmt: skip
    db_flag(hq)
    hq.add_argument("--broker", default=os.environ.get("TENPO_BROKER", "mqtt://127.0.0.1:1883"),
                    help="broker for live presence (default: $TENPO_BROKER or mqtt://127.0.0.1:1883); "
                         "'none' to skip")  # fmt: skip
    hq.add_argument("--config", type=Path, help="monitor TOML: [thresholds] and [refresh] (defaults built in)")
    hq.add_argument("--tls-ca", type=Path, help="CA that signed the broker certificate (mqtts://)")
    hq.add_argument("--tls-cert", type=Path, help="the monitor's client certificate")
    hq.add_argument("--tls-key", type=Path, help="its private key")
    hq.add_argument("--screenshots", type=Path, help="folder for the screenshot key's SVGs (mode 0600; default: "
                    "the current folder)")  # fmt: skip
    hq.add_argument("--serve", action="store_true", help="serve the monitor to a browser (textual-serve) instead")
    hq.add_argument("--host", default="localhost", help="address to serve on with --serve (default: localhost)")
    hq.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port for --serve (default: {DEFAULT_PORT})")
    hq.add_argument("--https-cert", type=Path, help="with --serve: serve over HTTPS with this certificate (required "
                    "for any --host but loopback; issue 14)")  # fmt: skip
    hq.add_argument("--https-key", type=Path, help="its private key")
    hq.add_argument("--public-url", type=http_url, help="with --serve: the address browsers use to reach this server, e.g. "
                    "https://hq.example.jp/monitor behind a proxy (default: http://HOST:PORT; with a wildcard "
                    "--host such as 0.0.0.0, this machine's name)")  # fmt: skip
    hq.set_defaults(func=cmd_hq)


def make_app(
    db_url: str, broker_url: str | None, config_path: Path | None = None, tls: object = None, existing_db: bool = False,
    screenshots: Path | None = None,
) -> HqApp:
    """The app as the CLI runs it; tests build theirs the same way (with a pinned clock if they like).

    ``existing_db``: refuse a database that does not exist (a monitor must not create an empty HQ).
    """
    from tenpo.cloud.hq.app import HqApp  # Textual loads only when a monitor opens (not for --serve's parent)

    config = load_monitor_config(config_path)
    if existing_db:
        Central(db_url, create=False).close()
    broker = None if broker_url in (None, "", "none") else parse_broker_url(broker_url, "--broker")
    return HqApp(HqData(db_url, config), broker, tls, screenshot_dir=screenshots)  # type: ignore[arg-type]


def serve_command(args: argparse.Namespace) -> str:
    """The command textual-serve starts for each browser session: this same monitor, without --serve."""
    # -P: a browser session started from a source checkout must not import its partial tenpo/ folder.
    words = [sys.executable, "-P", "-m", "tenpo", "hq", "--db", args.db, "--broker", args.broker]
    for flag in ("config", "tls_ca", "tls_cert", "tls_key", "screenshots"):
        value = getattr(args, flag)
        if value is not None:
            words += [f"--{flag.replace('_', '-')}", str(value)]
    return shlex.join(words)


def http_url(text: str) -> str:
    """``--public-url`` as argparse takes it (a bad one is a usage error, exit 2)."""
    if not text.startswith(("http://", "https://")) or len(text.split("//", 1)[1].strip("/")) == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be an http:// or https:// address")
    return text


def public_url(host: str, port: int, explicit: str | None, machine: Callable[[], str] = socket.getfqdn) -> str:
    """Where browsers load the page and its websocket from: never a wildcard address, which a browser
    cannot connect to (the page would tell it to load from 0.0.0.0)."""
    if explicit:
        return explicit.rstrip("/")
    name = machine() if host in WILDCARD_HOSTS else host
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"  # an IPv6 address in a URL
    return f"http://{name}" if port == 80 else f"http://{name}:{port}"


def cmd_hq(args: argparse.Namespace) -> int:
    if args.serve:
        try:
            from textual_serve.server import Server  # the 'hq' extra
        except ImportError as exc:
            raise MissingExtra("tenpo hq --serve", "hq", exc) from None
        context = listen_context(args.host, args.https_cert, args.https_key)  # no plain HTTP beyond loopback
        Central(args.db, create=False).close()  # each browser session opens it: fail here, once
        url = public_url(args.host, args.port, args.public_url)
        if context is not None and url.startswith("http://"):
            url = "https://" + url[len("http://"):]
        print(f"serving the HQ monitor on {url} (listening on {args.host}:{args.port}); each session signs in first",
              file=sys.stderr)  # fmt: skip
        server = Server if context is None else tls_server(Server, context)
        server(serve_command(args), host=args.host, port=args.port, title="Tenpo HQ", public_url=url).serve()
        return 0
    tls = TlsFiles(args.tls_ca, args.tls_cert, args.tls_key)
    make_app(args.db, args.broker, args.config, tls, existing_db=True, screenshots=args.screenshots).run()
    return 0
