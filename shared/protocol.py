"""The wire protocol between store and HQ (docs/protocol.md is the prose version of this file).

Every upstream message is an :class:`Envelope` whose ``body`` is the JSON text of one message kind,
signed byte for byte with the store's Ed25519 key, so HQ never has to re-serialise to verify.
Downstream messages are plain JSON on topics only HQ may publish to (broker ACL).

Version rule: a reader ignores fields it does not know (msgspec's default), and rejects a message
whose ``v`` it does not know. New optional fields keep ``v``; anything a v1 reader would misread
gets a new ``v`` and a new topic root (``tenpo/v2``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from .ids import STORE_ID_REGEX

PROTOCOL_VERSION = 1
ROOT = "tenpo/v1"
MAX_UPSTREAM_BYTES = 1_048_576  # larger upstream payloads are dead-lettered unread
STORE_ID_PATTERN = re.compile(STORE_ID_REGEX)

UpKind = Literal["events", "birth", "death", "status", "pull", "snapshot"]


# ---------------------------------------------------------------------------- topics


def up_topic(store_id: str, kind: UpKind) -> str:
    return f"{ROOT}/stores/{store_id}/up/{kind}"


def down_topic(store_id: str, kind: Literal["ack", "changes", "snapshot"]) -> str:
    return f"{ROOT}/stores/{store_id}/down/{kind}"


BROADCAST_CHANGES = f"{ROOT}/broadcast/changes"
HQ_STATE = f"{ROOT}/hq/state"  # retained; like Sparkplug's primary host STATE
SHARE_GROUP = "tenpo-aggregators"


def shared(topic_filter: str, group: str = SHARE_GROUP) -> str:
    """A shared subscription: the broker gives each message to one member of ``group``."""
    return f"$share/{group}/{topic_filter}"


def parse_up_topic(topic: str) -> tuple[str, str] | None:
    """``tenpo/v1/stores/S001/up/events`` → ("S001", "events"); anything else → None."""
    parts = topic.split("/")
    if len(parts) != 6 or f"{parts[0]}/{parts[1]}" != ROOT or parts[2] != "stores" or parts[4] != "up":
        return None
    if not STORE_ID_PATTERN.match(parts[3]):
        return None
    return parts[3], parts[5]


def valid_store_id(store_id: str) -> bool:
    return bool(STORE_ID_PATTERN.match(store_id))


# ---------------------------------------------------------------------------- upstream


class Envelope(msgspec.Struct, frozen=True):
    """Signed wrapper of every upstream message; ``sig`` is base64 Ed25519 over ``body``'s UTF-8."""

    v: int
    store: str
    kind: str
    body: str
    sig: str


class Event(msgspec.Struct, frozen=True):
    seq: int  # per store, gap-free, from 1
    id: str  # unique event id, catches a reused sequence number (restored backup)
    type: str  # e.g. "member.registered", "stock.adjusted"
    schema: int  # version of this event type's payload
    hlc: int  # hybrid logical clock of the store when written
    payload: dict[str, Any]


class EventBatch(msgspec.Struct, frozen=True):
    stream: str  # random id of this store database's life; a wiped store starts a new stream
    events: list[Event]
    backlog: int = 0  # events still unacknowledged at the store after this batch


class Birth(msgspec.Struct, frozen=True):
    bdseq: int  # birth/death session number; a Will only counts if it matches the latest birth
    agent_version: str
    schema_version: int
    backlog: int
    last_seq: int
    last_acked_seq: int
    cursor: int
    hlc: int
    cert_not_after: float | None = None  # unix seconds; the store's client certificate expires (issue 14)


class Death(msgspec.Struct, frozen=True):
    bdseq: int


class Status(msgspec.Struct, frozen=True):
    backlog: int
    oldest_pending_age_s: float
    last_seq: int
    last_acked_seq: int
    cursor: int
    hlc: int


class Pull(msgspec.Struct, frozen=True):
    """Ask for the change feed after ``cursor`` (exclusive)."""

    cursor: int
    limit: int = 2000


class SnapshotRequest(msgspec.Struct, frozen=True):
    """Ask for the next chunk of a bootstrap snapshot.

    ``snapshot_id`` None starts a new snapshot; otherwise continue ``entity`` after ``after_key``.
    """

    snapshot_id: str | None = None
    entity: str | None = None
    after_key: str | None = None
    limit: int = 5000
    done: int = 0  # rows already applied, echoed back as progress
    stream: str = ""  # the asking store's stream: its own stock from other streams becomes its opening balance


UP_BODY_TYPES: dict[str, type[msgspec.Struct]] = {
    "events": EventBatch,
    "birth": Birth,
    "death": Death,
    "status": Status,
    "pull": Pull,
    "snapshot": SnapshotRequest,
}


# ---------------------------------------------------------------------------- downstream


class Ack(msgspec.Struct, frozen=True):
    """HQ has durably applied every event of ``stream`` up to and including ``hwm``.

    ``gap`` says HQ saw a later sequence number than hwm+1: resend from hwm+1 now. ``at`` is HQ's wall
    clock when it sent the ack (absent from older aggregators): the store estimates its clock skew from it.
    """

    stream: str
    hwm: int
    gap: bool = False
    error: str | None = None
    at: float | None = None


class HqState(msgspec.Struct, frozen=True):
    """An aggregator came online (or its Will says it went away). Stores re-ask on ``online``."""

    online: bool
    aggregator: str
    at: float


class Change(msgspec.Struct, frozen=True):
    seq: int  # HQ's global change sequence
    kind: str  # "member.upsert", "member.erase", "product.upsert", "stock.level", "points.balance"
    key: str
    data: dict[str, Any]
    store: str | None = None  # for one store only; None = every store


class ChangePage(msgspec.Struct, frozen=True):
    """Every change for the receiving store with from_seq < seq <= to_seq, in order."""

    from_seq: int
    to_seq: int
    latest: int
    changes: list[Change]


class SnapshotChunk(msgspec.Struct, frozen=True):
    snapshot_id: str
    as_of: int  # change seq the snapshot starts from; the feed resumes after it
    entity: str  # one of SNAPSHOT_ENTITIES
    rows: list[dict[str, Any]]
    next_key: str | None  # None: entity finished
    next_entity: str | None  # None with next_key None: snapshot finished
    progress: int = 0  # rows of this snapshot sent so far, including this chunk
    total: int = 0  # rows in the whole snapshot (estimate at its start)


SNAPSHOT_ENTITIES: tuple[str, ...] = (
    "products", "members", "stock", "asns", "member_rules", "beacon_keys",  # issue 14: beacon day keys
    "loyalty",  # issue 17 (H7): member.loyalty rows, so a new store earns at each member's rank at once
)  # fmt: skip

_encoder = msgspec.json.Encoder()


def encode(value: msgspec.Struct) -> bytes:
    return _encoder.encode(value)


class ProtocolError(ValueError):
    """A message that does not fit the protocol; the text says how."""


MAX_NESTING = 64  # JSON depth; real messages stay under 10, and msgspec recurses (RecursionError) near 1000
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')


def too_deep(data: bytes, limit: int = MAX_NESTING) -> bool:
    """True if the JSON text may nest arrays and objects more than ``limit`` deep (strings do not count).

    Checked before decoding with C-speed byte operations: drop escaped backslashes and quotes, so every
    quote left delimits a string; keep only brackets and quotes, then the brackets outside strings; each
    pass removes the innermost pairs (one level). Brackets that stop pairing up are not JSON: too deep
    only if they could still be (the decoder reports the rest).
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    structure = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    brackets = b"".join(structure.split(b'"')[::2])
    for passes in range(limit):
        if not brackets:
            return False
        reduced = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if reduced == brackets:  # depth is at most the passes done plus the openers left
            return passes + brackets.count(b"[") + brackets.count(b"{") > limit
        brackets = reduced
    return bool(brackets)


def decode(data: bytes | str, kind: type[msgspec.Struct], max_bytes: int | None = None, pre_check: bool = True) -> Any:
    """Decode one message; too large (``max_bytes``), too deep, not JSON or not ``kind`` → ProtocolError.
    ``pre_check=False`` skips the nesting pre-check (it splits the message: a 5,000-member bootstrap chunk into
    ~100,000 pieces, a 9.6 MB peak); msgspec's recursion limit still turns a message nested too deep into
    ProtocolError, only with a less precise message."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if max_bytes is not None and len(raw) > max_bytes:
        raise ProtocolError(f"oversized: {len(raw)} bytes > {max_bytes}")
    if pre_check and too_deep(raw):
        raise ProtocolError(f"invalid JSON: nested deeper than {MAX_NESTING} levels")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"schema: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from exc
    except RecursionError:  # only without the pre-check; kept so no input can escape as a crash
        raise ProtocolError("invalid JSON: nested too deep") from None
