"""The channel API: what a web shop or member-app backend asks HQ over MQTT 5 request/response.

docs/channel.md is the prose version of this file. A channel publishes a request (JSON, one of the
Structs below) on ``tenpo/v1/channel/{channel}/req/{op}`` with the MQTT 5 properties Response Topic
(``tenpo/v1/channel/{channel}/res/{client}``) and Correlation Data; an aggregator answers there with a
:class:`Response` carrying the same correlation data. The broker's ACL confines each channel's
certificate to its own ``req`` and ``res`` subtrees, so the channel in the topic is who asked.

Every write (``reserve``, ``cancel``) carries an idempotency ``key``: the same key from the same
channel gets the same reservation back, never a second one. Version rule as for the store protocol:
readers ignore fields they do not know; anything an older reader would misread gets ``tenpo/v2``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from .channel_points import EXTRA_REQUEST_TYPES, EXTRA_WRITE_OPS
from .events import Epoch, Id, Label, StoreId, Text
from .protocol import ROOT, ProtocolError, decode

CHANNEL_NAME_REGEX: Final = r"^[a-z0-9][a-z0-9_-]{0,31}$"
CLIENT_REGEX: Final = r"^[A-Za-z0-9_-]{1,64}$"
CHANNEL_CERT_PREFIX: Final = "channel-"  # certificate CN (broker username) of channel NAME
MAX_REQUEST_BYTES: Final = 16_384
DEFAULT_TIMEOUT_S: Final = 10.0

_CHANNEL = re.compile(CHANNEL_NAME_REGEX)
_CLIENT = re.compile(CLIENT_REGEX)

Op = Literal["stock", "reserve", "reservation", "cancel"]
OPS: Final[tuple[str, ...]] = ("stock", "reserve", "reservation", "cancel", *EXTRA_REQUEST_TYPES)  # H9: + points, app
WRITE_OPS: Final[frozenset[str]] = frozenset({"reserve", "cancel"}) | EXTRA_WRITE_OPS

ErrorCode = Literal["bad_request", "not_found", "conflict", "forbidden", "unavailable", "timeout", "internal"]
ERROR_CODES: Final[tuple[str, ...]] = (
    "bad_request", "not_found", "conflict", "forbidden", "unavailable", "timeout", "internal",
)  # fmt: skip

# ``in_transit``: collected at another store, on its way there (docs/transfers.md); born with reservations (issue 18).
State = Literal["requested", "confirmed", "ready", "in_transit", "picked_up", "rejected", "expired", "cancelled"]
STATES: Final[tuple[str, ...]] = ("requested", "confirmed", "ready", "in_transit", "picked_up", "rejected", "expired",
                                  "cancelled")  # fmt: skip
ACTIVE_STATES: Final[tuple[str, ...]] = ("requested", "confirmed", "ready")  # these hold stock at the holding store
IN_TRANSIT: Final = "in_transit"  # holds nothing: the units left the sender and are not yet at the pickup store
FINAL_STATES: Final[frozenset[str]] = frozenset({"picked_up", "rejected", "expired", "cancelled"})

Key = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
Qty = Annotated[int, Meta(ge=1, le=10_000)]


# ---------------------------------------------------------------------------- topics


def valid_channel(name: str) -> bool:
    return bool(_CHANNEL.fullmatch(name))


def valid_client(name: str) -> bool:
    return bool(_CLIENT.fullmatch(name))


def request_topic(channel: str, op: str) -> str:
    return f"{ROOT}/channel/{channel}/req/{op}"


def response_topic(channel: str, client: str) -> str:
    return f"{ROOT}/channel/{channel}/res/{client}"


REQUEST_FILTER: Final = f"{ROOT}/channel/+/req/+"


def parse_request_topic(topic: str) -> tuple[str, str] | None:
    """``tenpo/v1/channel/web/req/stock`` → ("web", "stock"); anything else → None."""
    parts = topic.split("/")
    if len(parts) != 6 or f"{parts[0]}/{parts[1]}" != ROOT or parts[2] != "channel" or parts[4] != "req":
        return None
    if not valid_channel(parts[3]):
        return None
    return parts[3], parts[5]


def response_topic_allowed(channel: str, topic: str) -> bool:
    """HQ answers only under the asking channel's own ``res`` subtree (never a store's or another channel's)."""
    prefix = f"{ROOT}/channel/{channel}/res/"
    return topic.startswith(prefix) and valid_client(topic[len(prefix):])


def channel_acl_lines(channel: str) -> list[str]:
    """The broker ACL block for channel ``channel`` (Mosquitto acl_file syntax). The deny lines win over the
    file's store patterns (a user's own lines are checked first), so the channel reads no change feed and
    writes no store topic; it may publish requests and read answers under its own name only."""
    root = f"{ROOT}/channel/{channel}"
    return [
        f"user {CHANNEL_CERT_PREFIX}{channel}",
        f"topic deny {ROOT}/stores/#",
        f"topic deny {ROOT}/broadcast/#",
        f"topic deny {ROOT}/hq/#",
        f"topic write {root}/req/#",
        f"topic read {root}/res/#",
    ]


# ---------------------------------------------------------------------------- requests


class Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """Base of every request."""


class StockQuery(Request, frozen=True, kw_only=True):
    sku: Id
    store: StoreId | None = None


class ReserveRequest(Request, frozen=True, kw_only=True):
    key: Key  # idempotency key: the same key gets the same reservation
    sku: Id
    store: StoreId  # the store that holds the stock (and hands it over, unless pickup_store says another)
    qty: Qty
    pickup_store: StoreId | None = None  # collect at another store: ``store`` sends it there (docs/transfers.md)
    member: Id | None = None
    customer: Text | None = None
    hold_h: Annotated[int, Meta(ge=1, le=720)] = 72  # how long a confirmed reservation waits for pickup
    confirm_s: Annotated[int, Meta(ge=1, le=86_400)] = 900  # how long HQ waits for the store's answer
    wait_s: Annotated[float, Meta(ge=0.0, le=30.0)] = 5.0  # answer once the store decided, or after this


class ReservationQuery(Request, frozen=True, kw_only=True):
    reservation_id: Id


class CancelRequest(Request, frozen=True, kw_only=True):
    key: Key
    reservation_id: Id


REQUEST_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    "stock": StockQuery,
    "reserve": ReserveRequest,
    "reservation": ReservationQuery,
    "cancel": CancelRequest,
    **EXTRA_REQUEST_TYPES,  # issue 18 parts 4-5 (H9): points at the web checkout, the member app
}


# ---------------------------------------------------------------------------- answers


class StoreStock(msgspec.Struct, frozen=True, kw_only=True):
    store_id: str
    on_hand: int
    reserved: int
    available: int  # on_hand - reserved, never below 0
    as_of: float | None  # seconds since HQ last heard from the store (None: never)
    reported_at: float | None  # that moment, epoch seconds
    online: bool


class StockAnswer(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    stores: list[StoreStock]


class ReservationAnswer(msgspec.Struct, frozen=True, kw_only=True):
    reservation_id: str
    state: State
    sku: str
    store_id: str
    qty: int
    member_id: str | None = None
    reason: str | None = None
    receipt_no: str | None = None
    created_at: Epoch
    updated_at: Epoch
    expires_at: Epoch | None = None  # requested: HQ's deadline for the store; confirmed/ready: pickup deadline
    pickup_store: str | None = None  # where the customer collects it, when not the holding store
    transfer_id: str | None = None  # the transfer that carries it there (in_transit, and after arrival)
    shipped_from: str | None = None  # the store that sent it (store_id is the pickup store once it arrived)


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    code: ErrorCode
    message: Annotated[str, Meta(max_length=1024)]


class Response(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    ok: bool
    op: Label
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None


class ChannelError(Exception):
    """A request HQ refuses; ``code`` is one of ERROR_CODES."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: ErrorCode = code
        self.message = message


def decode_request(op: str, payload: bytes) -> msgspec.Struct:
    """The request for ``op``; ChannelError(bad_request) naming what is wrong otherwise."""
    kind = REQUEST_TYPES.get(op)
    if kind is None:
        raise ChannelError("bad_request", f"unknown operation {op[:64]!r}: one of {', '.join(OPS)}")
    try:
        request: msgspec.Struct = decode(payload, kind, max_bytes=MAX_REQUEST_BYTES)
    except ProtocolError as exc:
        raise ChannelError("bad_request", str(exc)[:900]) from None
    return request


def ok(op: str, result: msgspec.Struct) -> Response:
    return Response(ok=True, op=op, result=msgspec.to_builtins(result))


def failed(op: str, code: ErrorCode, message: str) -> Response:
    return Response(ok=False, op=op[:128] or "?", error=ErrorInfo(code=code, message=message[:1024]))


_encoder = msgspec.json.Encoder()


def encode_message(value: msgspec.Struct) -> bytes:
    return _encoder.encode(value)


def decode_response(payload: bytes) -> Response:
    result: Response = decode(payload, Response, max_bytes=8 * 1024 * 1024)
    return result
