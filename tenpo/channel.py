"""`tenpo.channel.Client` and `tenpo channel ...`: a web shop's or member app's side of the channel API.

    from tenpo.channel import Client
    with Client("mqtts://broker:8883", "web", tls=TlsFiles(ca, cert, key)) as shop:
        for store in shop.stock("TSHIRT-M").stores: ...
        held = shop.reserve("TSHIRT-M", "S001", 1, key="order-1234")   # same key -> same reservation

Each request is an MQTT 5 PUBLISH on ``tenpo/v1/channel/{channel}/req/{op}`` with a Response Topic of this
client's own and a fresh Correlation Data; the answer comes back there (docs/channel.md). A refusal is a
:class:`ChannelError` with its code; no answer within the timeout is ``timeout``.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import sys
import threading
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tenpo.channel_extras import ExtrasMixin
from tenpo.channel_extras import register as register_extras
from tenpo.shared.channel_api import (
    DEFAULT_TIMEOUT_S,
    REQUEST_TYPES,
    ChannelError,
    ReservationAnswer,
    StockAnswer,
    decode_response,
    encode_message,
    request_topic,
    response_topic,
    valid_channel,
)
from tenpo.shared.errors import ConfigError, TenpoError
from tenpo.shared.mqtt import TlsFiles, make_client, parse_broker_url
from tenpo.shared.protocol import ProtocolError
from tenpo.shared.terminal import print_json, safe_text

__all__ = ["Client", "ChannelError", "TlsFiles"]


class Client(ExtrasMixin):  # issue 18 parts 4-5 (H9): points at the web checkout, the member app
    """One connection for one channel; thread-safe: several requests may be in flight at once."""

    def __init__(self, broker: str, channel: str, tls: TlsFiles | None = None, client_id: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:  # fmt: skip
        if not valid_channel(channel):
            raise ConfigError(f"channel {channel!r}: lower-case letters, digits, '-' and '_' (1-32)")
        self.channel = channel
        self.timeout = timeout
        self.broker = parse_broker_url(broker, "--broker")
        self.client_id = client_id or f"{channel}-{uuid.uuid4().hex[:12]}"
        self.reply_topic = response_topic(channel, self.client_id)
        self._waiting: dict[bytes, tuple[threading.Event, list[bytes]]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._refused: str | None = None
        self._mqtt = make_client(self.client_id, tls, self.broker)
        self._mqtt.on_connect = self._on_connect
        self._mqtt.on_subscribe = self._on_subscribe
        self._mqtt.on_message = self._on_message
        self._connected = False

    # ------------------------------------------------------------------ connection

    def connect(self) -> Client:
        try:
            self._mqtt.connect(self.broker.host, self.broker.port, keepalive=30)
        except OSError as exc:
            raise ChannelError("unavailable", f"cannot reach the broker {self.broker} ({exc})") from None
        self._mqtt.loop_start()
        if not self._ready.wait(self.timeout) or self._refused:
            self.close()
            raise ChannelError("unavailable", self._refused or f"the broker {self.broker} did not let us in within "
                               f"{self.timeout:.0f} s")  # fmt: skip
        self._connected = True
        return self

    def close(self) -> None:
        self._mqtt.disconnect()
        self._mqtt.loop_stop()
        self._connected = False

    def __enter__(self) -> Client:
        return self if self._connected else self.connect()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._refused = f"the broker refused the connection: {reason}"
            self._ready.set()
            return
        no_delay(client)
        client.subscribe(self.reply_topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        refused = [r for r in reasons if getattr(r, "is_failure", False)]
        if refused:
            self._refused = f"the broker refused {self.reply_topic} ({refused[0]}): is this the channel's certificate?"
        self._ready.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        with self._lock:
            waiter = self._waiting.get(bytes(correlation)) if correlation else None
        if waiter is not None:
            waiter[1].append(bytes(message.payload))
            waiter[0].set()

    # ------------------------------------------------------------------ requests

    def request(self, op: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send one request; its ``result`` object, or ChannelError with the code HQ (or the wait) gave."""
        if not self._connected:
            self.connect()
        kind = REQUEST_TYPES.get(op)
        if kind is None:
            raise ChannelError("bad_request", f"unknown operation {op!r}")
        try:
            payload = encode_message(msgspec.convert(body, kind))  # the same checks HQ makes, before sending
        except msgspec.ValidationError as exc:
            raise ChannelError("bad_request", str(exc)) from None
        timeout = self.timeout if timeout is None else timeout
        correlation = uuid.uuid4().bytes
        done = threading.Event()
        answers: list[bytes] = []
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = correlation
        props.MessageExpiryInterval = max(1, math.ceil(timeout))  # a request nobody took in time is dropped
        with self._lock:
            self._waiting[correlation] = (done, answers)
        try:
            self._mqtt.publish(request_topic(self.channel, op), payload, qos=1, properties=props)
            if not done.wait(timeout):
                raise ChannelError("timeout", f"no answer to {op} within {timeout:.1f} s (is an aggregator running?)")
        finally:
            with self._lock:
                self._waiting.pop(correlation, None)
        try:
            response = decode_response(answers[0])
        except ProtocolError as exc:
            raise ChannelError("internal", f"unreadable answer: {exc}") from None
        if not response.ok:
            error = response.error
            raise ChannelError(error.code if error else "internal", error.message if error else "refused")
        return response.result or {}

    def stock(self, sku: str, store: str | None = None) -> StockAnswer:
        result: StockAnswer = msgspec.convert(self.request("stock", {"sku": sku, "store": store}), StockAnswer)
        return result

    def reserve(self, sku: str, store: str, qty: int, *, key: str | None = None, member: str | None = None,
                customer: str | None = None, wait_s: float = 5.0, hold_h: int = 72, confirm_s: int = 900,
                pickup_store: str | None = None) -> ReservationAnswer:  # fmt: skip
        """Reserve for pickup; waits up to ``wait_s`` for the store's decision (``requested`` if it has not
        decided yet: ask again with :meth:`reservation`). Retry with the same ``key`` after any failure.
        ``pickup_store``: collect it at another store; ``store`` sends it there (docs/transfers.md)."""
        body = {"key": key or uuid.uuid4().hex, "sku": sku, "store": store, "qty": qty, "member": member,
                "customer": customer, "wait_s": wait_s, "hold_h": hold_h, "confirm_s": confirm_s}  # fmt: skip
        if pickup_store:
            body["pickup_store"] = pickup_store
        result = self.request("reserve", body, timeout=max(self.timeout, wait_s + 5.0))
        return msgspec.convert(result, ReservationAnswer)

    def reservation(self, reservation_id: str) -> ReservationAnswer:
        return msgspec.convert(self.request("reservation", {"reservation_id": reservation_id}), ReservationAnswer)

    def cancel(self, reservation_id: str, key: str | None = None) -> ReservationAnswer:
        body = {"key": key or f"cancel-{reservation_id}", "reservation_id": reservation_id}
        return msgspec.convert(self.request("cancel", body), ReservationAnswer)


# ---------------------------------------------------------------------------- `tenpo channel ...`


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    channel = subparsers.add_parser("channel", help="the channel API over MQTT: store stock, reservations (docs/channel.md)")
    commands = channel.add_subparsers(dest="channel_command", metavar="COMMAND")
    commands.required = True
    stock = _common(commands.add_parser("stock", help="a SKU's on hand, reserved and available per store"))
    stock.add_argument("--sku", required=True)
    stock.add_argument("--store", metavar="ID")
    stock.set_defaults(func=cmd_stock)
    reserve = _common(commands.add_parser("reserve", help="reserve for pickup at a store (BOPIS / 店舗受取)"))
    reserve.add_argument("--sku", required=True)
    reserve.add_argument("--store", required=True, metavar="ID", help="the store that holds the stock")
    reserve.add_argument("--pickup-store", metavar="ID",
                         help="collect it here instead: --store sends it (a transfer, docs/transfers.md)")  # fmt: skip
    reserve.add_argument("--qty", required=True, type=int)
    reserve.add_argument("--member", metavar="M")
    reserve.add_argument("--customer", help="name or phone when not a member")
    reserve.add_argument("--key", metavar="K", help="idempotency key (default: a new one, printed); reuse it to retry")
    reserve.add_argument("--wait", type=float, default=5.0, metavar="S", help="wait up to S s for the store (0-30)")
    reserve.add_argument("--hold-hours", type=int, default=72, metavar="H", help="how long it waits for pickup")
    reserve.set_defaults(func=cmd_reserve)
    one = _common(commands.add_parser("reservation", help="a reservation's state"))
    one.add_argument("reservation_id", metavar="ID")
    one.set_defaults(func=cmd_reservation)
    cancel = _common(commands.add_parser("cancel", help="cancel a reservation (frees the units)"))
    cancel.add_argument("reservation_id", metavar="ID")
    cancel.add_argument("--key", metavar="K", help="idempotency key (default: cancel-ID)")
    cancel.set_defaults(func=cmd_cancel)
    register_extras(commands, _common, _run)  # H9: tenpo channel points|device|member …


def _common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--broker", default=os.environ.get("TENPO_CHANNEL_BROKER"),
                        help="mqtt://host:port or mqtts://host:8883 (default: $TENPO_CHANNEL_BROKER)")  # fmt: skip
    parser.add_argument("--name", default=os.environ.get("TENPO_CHANNEL", "web"), metavar="CHANNEL",
                        help="this channel's name, as in its certificate (default: $TENPO_CHANNEL or web)")  # fmt: skip
    parser.add_argument("--tls-ca", type=str)
    parser.add_argument("--tls-cert", type=str)
    parser.add_argument("--tls-key", type=str)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S")
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _client(args: argparse.Namespace) -> Client:
    if not args.broker:
        raise ConfigError("--broker: missing (mqtt://host:port), or set TENPO_CHANNEL_BROKER")
    tls = TlsFiles(*(Path(p) if p else None for p in (args.tls_ca, args.tls_cert, args.tls_key)))
    return Client(args.broker, args.name, tls, timeout=args.timeout)


class _Refused(TenpoError):
    pass


def _run(args: argparse.Namespace, call: Any) -> Any:
    try:
        with _client(args) as client:
            return call(client)
    except ChannelError as exc:
        raise _Refused(f"channel {args.name}: {exc.code}: {safe_text(exc.message)}") from None


def cmd_stock(args: argparse.Namespace) -> int:
    answer: StockAnswer = _run(args, lambda c: c.stock(args.sku, args.store))
    if args.json:
        print_json(msgspec.to_builtins(answer))
        return 0
    if not answer.stores:
        print(f"{answer.sku}: no store has it")
    for s in answer.stores:
        age = "never reported" if s.as_of is None else f"as of {s.as_of:.0f}s ago"
        print(f"{s.store_id:<8} on hand {s.on_hand:>5}  reserved {s.reserved:>4}  available {s.available:>5}  ({age})")
    return 0


def _show(answer: ReservationAnswer, as_json: bool) -> int:
    if as_json:
        print_json(msgspec.to_builtins(answer))
    else:
        why = f" ({safe_text(answer.reason)})" if answer.reason else ""
        where = f" for pickup at {answer.pickup_store}" if answer.pickup_store else ""
        transit = f" (transfer {answer.transfer_id} from {answer.shipped_from})" if answer.transfer_id else ""
        print(f"reservation {answer.reservation_id}: {answer.state}{why}  {answer.sku} x{answer.qty} at"
              f" {answer.store_id}{where}{transit}")
    return 0


def cmd_reserve(args: argparse.Namespace) -> int:
    key = args.key or uuid.uuid4().hex
    if not args.key and not args.json:
        print(f"idempotency key {key} (retry with --key {key})", file=sys.stderr)
    answer = _run(args, lambda c: c.reserve(args.sku, args.store, args.qty, key=key, member=args.member,
                                            customer=args.customer, wait_s=args.wait, hold_h=args.hold_hours,
                                            pickup_store=args.pickup_store))  # fmt: skip
    return _show(answer, args.json)


def cmd_reservation(args: argparse.Namespace) -> int:
    return _show(_run(args, lambda c: c.reservation(args.reservation_id)), args.json)


def cmd_cancel(args: argparse.Namespace) -> int:
    return _show(_run(args, lambda c: c.cancel(args.reservation_id, args.key)), args.json)


def no_delay(client: mqtt.Client) -> None:
    """TCP_NODELAY on the connection (paho does not set it): a request leaves at once, not after the TCP ACK
    of the previous small packet."""
    sock = client.socket()
    if isinstance(sock, socket.socket):  # paho types it as a SocketLike; a TCP (or TLS) connection is a socket
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
