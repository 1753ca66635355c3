"""Thin paho-mqtt 2.x adapter shared by store and HQ: broker URLs, TLS, reconnect with jitter."""

from __future__ import annotations

import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tenpo.shared.errors import ConfigError


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


def parse_broker_url(url: str, field: str = "broker.url") -> BrokerUrl:
    """``mqtt://host:port`` or ``mqtts://host:port``; ports default to 1883 / 8883."""
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{field}: missing broker URL (mqtt://host:port)")
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"{field}: {url!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ConfigError(f"{field}: {url!r} has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{field}: {url!r} has a bad port") from exc
    tls = parts.scheme == "mqtts"
    return BrokerUrl(parts.hostname, port or (8883 if tls else 1883), tls)


def make_client(client_id: str, tls: TlsFiles | None = None, broker: BrokerUrl | None = None) -> mqtt.Client:
    """An MQTT v5 client that reconnects by itself; callers add callbacks, Will and subscriptions."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, reconnect_on_failure=True
    )
    # Jitter the first retry so a whole chain of stores does not reconnect in lockstep after an outage.
    client.reconnect_delay_set(min_delay=1, max_delay=30 + random.randint(0, 10))
    client.max_inflight_messages_set(32)
    if broker is not None and broker.tls:
        client.tls_set_context(tls_context(tls or TlsFiles()))
    return client


def tls_context(files: TlsFiles) -> ssl.SSLContext:
    """A client TLS context; a missing or unreadable file is a ConfigError naming it (ssl's own errors do not)."""
    context = ssl.create_default_context()
    if files.ca:
        _load(files.ca, "CA certificate", lambda: context.load_verify_locations(cafile=str(files.ca)))
    if files.cert and files.key:
        for path, what in ((files.cert, "client certificate"), (files.key, "client key")):
            _load(path, what, path.read_bytes)
        _load(files.cert, "client certificate or its key",
              lambda: context.load_cert_chain(str(files.cert), str(files.key)))  # fmt: skip
    return context


def _load(path: Path, what: str, load: Callable[[], object]) -> None:
    try:
        load()
    except FileNotFoundError:
        raise ConfigError(f"TLS {what} {path}: file not found") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS {what} {path}: cannot use it ({exc})") from None


def connect_properties(session_expiry_s: int = 0, receive_maximum: int | None = None) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    if receive_maximum is not None:  # unacknowledged QoS 1 messages the broker may send before waiting
        props.ReceiveMaximum = receive_maximum
    return props


def connect_async(client: mqtt.Client, broker: BrokerUrl, keepalive: int = 15, receive_maximum: int | None = None) -> None:
    """Start connecting in the background; paho's loop thread retries until the broker answers."""
    # Clean start: durability lives in the SQLite outbox and the change feed cursor, not in broker sessions.
    client.connect_async(
        broker.host, broker.port, keepalive=keepalive, clean_start=True,
        properties=connect_properties(0, receive_maximum),
    )  # fmt: skip
    client.loop_start()
