"""Store presence straight from the broker, so the monitor sees a store drop before any database does.

The monitor subscribes plainly (not through the aggregators' shared group) to every store's birth,
death (the MQTT Will) and status. Each is a signed envelope, checked like the aggregator checks it.

bdseq rule (Sparkplug B's NBIRTH/NDEATH): a death counts only if its bdseq equals the newest birth's.
Retained births and deaths arrive in no promised order on subscribe, so we keep the newest bdseq of
each and call a store online when its newest birth is newer than its newest death: a death for the
current session (equal bdseq) marks it offline, whichever of the two arrived first, and a late Will of
an older session changes nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import paho.mqtt.client as mqtt

from tenpo.cloud.apply import KeyRing, Rejected, open_envelope
from tenpo.cloud.db import Central
from tenpo.cloud.reconnect import connection_lost, reconnect
from tenpo.shared import hlc
from tenpo.shared.mqtt import BrokerUrl, TlsFiles, connect_async, make_client
from tenpo.shared.protocol import ROOT

log = logging.getLogger(__name__)

PRESENCE_TOPICS = tuple(f"{ROOT}/stores/+/up/{kind}" for kind in ("birth", "death", "status"))


@dataclass(frozen=True, slots=True)
class Presence:
    """What the broker told us about one store; None fields are not known yet."""

    birth_bdseq: int = -1
    death_bdseq: int = -1
    seen_at: float | None = None  # when the last presence message arrived (HQ clock)
    changed_at: float | None = None  # when online/offline last flipped
    agent_version: str | None = None
    schema_version: int | None = None
    backlog: int | None = None
    last_seq: int | None = None
    cursor: int | None = None
    skew_ms: int | None = None

    @property
    def online(self) -> bool:
        return self.birth_bdseq > self.death_bdseq


def fold_presence(current: Presence | None, kind: str, body: Any, now: float, retained: bool = False) -> Presence:
    """The presence after one verified birth, death or status message (pure).

    A retained message (what the broker hands a new subscriber) may be hours old: it still tells
    which session is newest (online or not), but not when the store was seen, its backlog or its
    clock skew (the skew would be measured against the message's age), so those stay unknown and the
    monitor shows the database's figures, as `tenpo cloud status` does.
    """
    state = current or Presence()
    if retained:
        if kind == "birth":
            return replace(state, birth_bdseq=max(state.birth_bdseq, body.bdseq))
        if kind == "death":
            return replace(state, death_bdseq=max(state.death_bdseq, body.bdseq))
        return state
    was_online = state.online if current is not None else None
    if kind == "birth":
        state = replace(
            state, birth_bdseq=max(state.birth_bdseq, body.bdseq), agent_version=body.agent_version,
            schema_version=body.schema_version, backlog=body.backlog, last_seq=body.last_seq, cursor=body.cursor,
            skew_ms=hlc.skew_millis(body.hlc, int(now * 1000)),
        )  # fmt: skip
    elif kind == "death":
        state = replace(state, death_bdseq=max(state.death_bdseq, body.bdseq))
    elif kind == "status":
        state = replace(
            state, backlog=body.backlog, last_seq=body.last_seq, cursor=body.cursor,
            skew_ms=hlc.skew_millis(body.hlc, int(now * 1000)),
        )  # fmt: skip
    # The first message we hear (often a retained one) says nothing about *when* the store flipped.
    changed = was_online is not None and was_online != state.online
    return replace(state, seen_at=now, changed_at=now if changed else state.changed_at)


PresenceCallback = Callable[[str, Presence], None]


class PresenceListener:
    """paho client on its own thread; calls ``on_change(store_id, presence)`` for every verified message."""

    def __init__(
        self, db_url: str, broker: BrokerUrl, on_change: PresenceCallback, clock: Callable[[], float],
        tls: TlsFiles | None = None,
    ) -> None:  # fmt: skip
        self._db_url = db_url
        self._db: Central | None = None  # opened on paho's thread, used only there
        self._keys: KeyRing | None = None
        self._on_change = on_change
        self._clock = clock
        self._state: dict[str, Presence] = {}
        self.broker = broker
        self.connected = threading.Event()
        self.rejected = 0  # messages that failed verification (the aggregator dead-letters them)
        self.client = make_client(f"tenpo-hq-monitor-{os.getpid()}-{os.urandom(3).hex()}", tls, broker)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def start(self) -> None:
        connect_async(self.client, self.broker)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        if self._db is not None:
            self._db.close()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, properties: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused the monitor: %s", reason)
            return
        client.subscribe([(topic, 1) for topic in PRESENCE_TOPICS])
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if self._keys is None:
            self._db = Central(self._db_url)
            self._keys = KeyRing(self._db)
        try:
            opened = open_envelope(message.topic, bytes(message.payload), self._keys)
        except Rejected:
            self.rejected += 1
            return
        except Exception as exc:  # a database hiccup while loading a key must not stop presence
            log.exception("presence message from %s not checked", message.topic)
            if self._db is not None and connection_lost(self._db, exc):  # PostgreSQL failed over: next one reads
                try:
                    reconnect(self._db)
                except Exception:
                    log.warning("presence: PostgreSQL still unreachable; trying again with the next message")
            return
        presence = fold_presence(self._state.get(opened.store_id), opened.kind, opened.body, self._clock(),
                                 retained=bool(message.retain))  # fmt: skip
        self._state[opened.store_id] = presence
        self._on_change(opened.store_id, presence)
