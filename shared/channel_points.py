"""Points at the web checkout and the member app's requests: the channel API's later operations (issue 18,
parts 4 and 5). docs/channel.md is the prose version.

Points: ``points-balance`` (read), ``points-hold`` → ``points-capture`` | ``points-release`` (a two-phase
redemption; a hold not captured expires), ``points-earn`` (a web order earns at the member's rank).
The member app: ``device-register`` and ``device-rotate`` (the member's beacon secret, to the app only),
``member-update`` (profile and consent edits, field-level last writer wins by hybrid logical clock).

Every write carries an idempotency ``key``, as ``reserve`` and ``cancel`` do (tenpo.shared.channel_api).
This module imports nothing from channel_api, which merges these request types into its own table.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

from .events import Epoch, Field, Id, Word

Key = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]  # as channel_api.Key
Amount = Annotated[int, Meta(ge=1, le=10_000_000)]
Yen = Annotated[int, Meta(ge=0, le=100_000_000)]

HOLD_STATES: Final[tuple[str, ...]] = ("held", "captured", "released", "expired")
DEFAULT_HOLD_S: Final = 900  # 15 minutes: a checkout's payment step


class PointsBalanceQuery(msgspec.Struct, frozen=True, kw_only=True):
    member: Id


class PointsHoldRequest(msgspec.Struct, frozen=True, kw_only=True):
    key: Key
    member: Id
    amount: Amount
    order: Id  # the web order the points will pay for
    hold_s: Annotated[int, Meta(ge=30, le=86_400)] = DEFAULT_HOLD_S


class PointsCaptureRequest(msgspec.Struct, frozen=True, kw_only=True):
    key: Key
    hold_id: Id
    earn_on: Yen = 0  # yen the customer paid otherwise: earns at the member's rank with the capture


class PointsReleaseRequest(msgspec.Struct, frozen=True, kw_only=True):
    key: Key
    hold_id: Id


class PointsEarnRequest(msgspec.Struct, frozen=True, kw_only=True):
    key: Key
    member: Id
    order: Id
    earn_on: Yen  # yen paid (after points), the basis of the accrual


class DeviceRequest(msgspec.Struct, frozen=True, kw_only=True):
    key: Key
    member: Id
    device: Id


class MemberUpdateRequest(msgspec.Struct, frozen=True, kw_only=True):
    key: Key
    member: Id
    name: Field | None = None
    kana: Field | None = None
    phone: Field | None = None
    email: Field | None = None
    consent: dict[Word, bool] | None = None  # only the purposes that change


EXTRA_REQUEST_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    "points-balance": PointsBalanceQuery,
    "points-hold": PointsHoldRequest,
    "points-capture": PointsCaptureRequest,
    "points-release": PointsReleaseRequest,
    "points-earn": PointsEarnRequest,
    "device-register": DeviceRequest,
    "device-rotate": DeviceRequest,
    "member-update": MemberUpdateRequest,
}
EXTRA_WRITE_OPS: Final[frozenset[str]] = frozenset(set(EXTRA_REQUEST_TYPES) - {"points-balance"})


# ---------------------------------------------------------------------------- answers


class PointsBalanceAnswer(msgspec.Struct, frozen=True, kw_only=True):
    member_id: str
    balance: int  # what the member may spend now, anywhere: the ledger, active holds already taken off
    held: int  # points in active web holds
    rank: str | None = None
    multiplier_pct: int | None = None


class HoldAnswer(msgspec.Struct, frozen=True, kw_only=True):
    hold_id: str
    member_id: str
    amount: int
    state: str  # one of HOLD_STATES
    order: str
    expires_at: Epoch
    earned: int = 0  # points the order earned with the capture
    balance: int  # the member's balance after this answer's change


class EarnAnswer(msgspec.Struct, frozen=True, kw_only=True):
    member_id: str
    order: str
    earned: int
    rank: str | None
    multiplier_pct: int
    balance: int


class DeviceAnswer(msgspec.Struct, frozen=True, kw_only=True):
    member_id: str
    device_id: str
    secret: str  # hex, 16 or 32 bytes: the app derives its rotating beacon id from it (docs/beacons.md)
    issued_at: Epoch  # when HQ made this secret; the stores' old ids stop at their next id refresh


class MemberAnswer(msgspec.Struct, frozen=True, kw_only=True):
    member_id: str
    applied: list[str]  # fields (consent.PURPOSE for consent) this edit set
    kept: list[str]  # fields a newer edit had already set: this one lost, by its clock
    consent: dict[str, bool]


def result_of(answer: msgspec.Struct) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.to_builtins(answer)
    return result
