"""`tenpo hq --serve` beyond this machine only over TLS (issue 14).

The monitor in a browser carries operator passwords and TOTP codes, and shows HQ's data: on anything
but a loopback address it is served over HTTPS/WSS (``--https-cert``/``--https-key``), or not at all.
A TLS-terminating proxy in front works too: serve on localhost and let the proxy face the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import ssl
from pathlib import Path
from typing import Any

from tenpo.shared.errors import UserError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and the name localhost; a wildcard ("", 0.0.0.0, ::) or any other address is not."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.strip().lower() in LOOPBACK_NAMES


def listen_context(host: str, cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The TLS context to serve with; None for plain HTTP, allowed on loopback only (UserError otherwise)."""
    if (cert is None) != (key is None):
        raise UserError("--https-cert and --https-key go together")
    if cert is not None and key is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise UserError(f"--https-cert/--https-key: cannot load ({exc})") from None
        return context
    if not is_loopback(host):
        raise UserError(f"--host {host or '(all addresses)'}: the HQ monitor carries sign-ins and customer data; it is "
                        "served beyond this machine only over TLS: add --https-cert and --https-key, or serve on "
                        "localhost behind a TLS-terminating proxy")  # fmt: skip
    return None


def tls_server(base: Any, context: ssl.SSLContext) -> Any:
    """textual-serve's Server, listening with ``context`` (its ``serve`` passes no ssl_context to aiohttp)."""

    class TlsServer(base):  # type: ignore[misc]
        def serve(self, debug: bool = False) -> None:
            from aiohttp import web  # late: textual-serve's own dependency, loaded only for --serve

            self.debug = debug
            self.initialize_logging()
            loop = asyncio.new_event_loop()
            try:
                loop.add_signal_handler(signal.SIGINT, self.request_exit)
                loop.add_signal_handler(signal.SIGTERM, self.request_exit)
            except NotImplementedError:
                pass
            web.run_app(self._make_app(), host=self.host, port=self.port, handle_signals=False, loop=loop,
                        ssl_context=context, print=lambda *args: None)  # fmt: skip

    return TlsServer
