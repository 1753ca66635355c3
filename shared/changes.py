"""The catalogue of downstream change kinds: one msgspec Struct per kind's ``data``.

HQ checks every change it records against its Struct (tenpo.cloud.apply.record_changes) and the
store decodes every change and snapshot row into its Struct before applying it (tenpo.edge.feed), so
a row that does not fit becomes a dead letter naming the field. docs/protocol.md lists the same kinds;
tests/test_event_catalogue.py keeps the two in step.

Versioning as for events: new optional fields keep the kind, anything an older store would misread
gets a new kind; a store keeps a kind it does not know in its dead letters and moves on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import msgspec
from msgspec import Meta

from tenpo.shared.events import (
    Epoch,
    Field,
    Id,
    Label,
    Level,
    PayloadMismatch,
    Points,
    Quantity,
    Seq,
    StoreId,
    Text,
    Word,
    Yen,
    convert,
)

AsnStatus = Literal["open", "received", "closed"]
Jan = Annotated[str, Meta(pattern=r"^(\d{8}|\d{12,14})$")]


class ChangeData(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every change's data; ``KIND`` names it in the catalogue."""

    KIND: ClassVar[str] = ""


class ProductUpsert(ChangeData, frozen=True, kw_only=True):
    KIND: ClassVar[str] = "product.upsert"

    sku: Id
    jan: Jan | None = None
    name: Field
    price: Yen
    tax_class: Literal["standard", "reduced"]
    version: Seq = 0
    # A variant of a style (品番) in a colour and a size (tenpo.shared.variants); absent for other products.
    style: Word | None = None
    colour: Word | None = None
    size: Word | None = None


class MemberUpsert(ChangeData, frozen=True, kw_only=True):
    """A golden member record; a snapshot row adds ``points`` and ``through``."""

    KIND: ClassVar[str] = "member.upsert"

    member_id: Id
    name: Field | None = None
    kana: Field | None = None
    phone: Field | None = None
    email: Field | None = None
    card_no: Field | None = None
    line_user_id: Field | None = None
    beacon_secret: Word | None = None
    consent: dict[Word, bool] | None = None
    custom: dict[Word, Any] | None = None
    home_store: StoreId | None = None
    version: Seq = 0
    points: Points = 0
    through: dict[Id, Seq] | None = None


class MemberErase(ChangeData, frozen=True, kw_only=True):
    KIND: ClassVar[str] = "member.erase"

    member_id: Id
    version: Seq = 0


class PointsBalance(ChangeData, frozen=True, kw_only=True):
    KIND: ClassVar[str] = "points.balance"

    member_id: Id
    balance: Points
    through: dict[Id, Seq] | None = None  # store -> last seq of that store HQ had applied


class StockLevel(ChangeData, frozen=True, kw_only=True):
    """Another store's on-hand; the asking store's own snapshot row adds its ``opening``."""

    KIND: ClassVar[str] = "stock.level"

    store_id: StoreId
    sku: Id
    on_hand: Level
    as_of: Epoch | None = None
    version: Seq = 0
    opening: Level = 0


class StockCorrection(ChangeData, frozen=True, kw_only=True):
    """An entry HQ made in one store's ledger (a resolved oversold conflict)."""

    KIND: ClassVar[str] = "stock.correction"

    store_id: StoreId
    sku: Id
    delta: Quantity
    reason: Field = "hq-adjustment"
    ref: Field | None = None
    entry_id: Seq | None = None


class MemberMerge(ChangeData, frozen=True, kw_only=True):
    KIND: ClassVar[str] = "member.merge"

    winner: Id
    losers: list[Id]
    merge_id: Seq | None = None
    version: Seq = 0


class MemberUnmerge(ChangeData, frozen=True, kw_only=True):
    KIND: ClassVar[str] = "member.unmerge"

    winner: Id
    loser: Id
    merge_id: Seq | None = None


class AsnLineData(msgspec.Struct, frozen=True, kw_only=True):
    gtin: Word
    qty: Quantity
    sku: Id | None = None


class AsnUpsert(ChangeData, frozen=True, kw_only=True, omit_defaults=True):
    """An advance ship notice (tenpo.shared.asn.Asn) with its status; sent to every store."""

    KIND: ClassVar[str] = "asn.upsert"

    shipment_id: Id
    store: StoreId
    epcs: list[Word] = []
    lines: list[AsnLineData] = []
    cartons: list[Word] = []
    supplier: Text | None = None
    expected_at: Word | None = None
    status: AsnStatus = "open"
    version: Seq = 0

    def asn_fields(self) -> dict[str, Any]:
        """The ASN itself, as tenpo.shared.asn.asn_from_dict reads it."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        data.pop("status", None)
        data.pop("version", None)
        return data


class AsnClosed(ChangeData, frozen=True, kw_only=True):
    KIND: ClassVar[str] = "asn.closed"

    shipment_id: Id
    status: AsnStatus
    version: Seq = 0


class PurchaseRecorded(ChangeData, frozen=True, kw_only=True):
    """One purchase in any store or channel, under the member's golden id."""

    KIND: ClassVar[str] = "purchase.recorded"

    purchase_id: Field  # "{channel}:{ref}"
    member_id: Id
    channel: Label
    ref: Label  # an order or receipt number as the channel writes it
    kind: Literal["sale", "refund", "order"]
    at: Annotated[str, Meta(max_length=64)] | None = None
    total: Yen
    points: Points = 0
    version: Seq = 0


RegistrationField = Literal["name", "kana", "phone", "email", "card_no"]


class MemberRules(ChangeData, frozen=True, kw_only=True):
    """The chain's registration rules for the counter (`tenpo cloud members rules set`); a store keeps
    the last it received, so it applies them offline too."""

    KIND: ClassVar[str] = "member.rules"

    required: list[RegistrationField] = []
    mobile_only: bool = False  # the phone must be a mobile number (the chain sends codes by SMS)
    contact_any_of: list[RegistrationField] = []  # at least one of these (e.g. phone or e-mail)
    consent_text: Text | None = None  # the wording the clerk shows (and the customer agrees to)
    version: Seq = 0


# Reservations held at a store for a channel or another store's clerk (issue 18).
ReservationState = Literal["requested", "confirmed", "ready", "in_transit", "picked_up", "rejected", "expired",
                           "cancelled"]  # fmt: skip


class ReservationUpsert(ChangeData, frozen=True, kw_only=True):
    """HQ's record of a reservation, for the holding store (``store_id``) and the pickup store. A new one in
    ``requested`` asks the holding store to confirm or reject; ``cancelled`` or ``expired`` releases it."""

    KIND: ClassVar[str] = "reservation.upsert"

    reservation_id: Id
    store_id: StoreId  # holds the stock and hands it over
    sku: Id
    qty: Annotated[int, Meta(ge=1, le=1_000_000)]
    state: ReservationState
    channel: Label
    member_id: Id | None = None
    customer: Text | None = None
    pickup_store: StoreId | None = None
    reason: Text | None = None
    expires_at: Epoch | None = None
    version: Seq = 0
    transfer_id: Id | None = None  # in transit to the pickup store (docs/transfers.md)
    shipped_from: StoreId | None = None  # the store that sent it there


class DeliveryUpsert(ChangeData, frozen=True, kw_only=True):
    """Where the shipping store (``store_id``, holding reservation ``reservation_id``) sends an お取り寄せ for home
    delivery (issue 18 §7). Sent to that store only, before the reservation's own change; personal data, sealed
    there at rest."""

    KIND: ClassVar[str] = "delivery.upsert"

    reservation_id: Id
    store_id: StoreId  # ships it
    ordered_at: StoreId  # the store whose clerk took the order
    sku: Id
    qty: Annotated[int, Meta(ge=1, le=1_000_000)]
    member_id: Id | None = None
    customer: Text
    address: Text
    phone: Text | None = None
    version: Seq = 0


# ---------------------------------------------------------------------------- loyalty (issue 17, H7)

IsoDate = Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]


class LoyaltyLot(msgspec.Struct, frozen=True, kw_only=True):
    expires_on: IsoDate  # the last JST day these points are good
    points: Points


class MemberLoyalty(ChangeData, frozen=True, kw_only=True):
    """A member's rank (with the multiplier an offline sale earns at) and points lots, as HQ last computed
    them (`tenpo cloud loyalty ranks|expire`); docs/loyalty.md."""

    KIND: ClassVar[str] = "member.loyalty"

    member_id: Id
    rank: Label
    multiplier_pct: Annotated[int, Meta(ge=0, le=10_000)] = 100
    spend: Yen = 0  # rolling spend the rank is based on
    as_of: IsoDate
    expiry_months: Annotated[int, Meta(ge=1, le=120)] = 12
    lots: Annotated[list[LoyaltyLot], Meta(max_length=400)] = []
    through: dict[Id, Seq] | None = None  # as points.balance: the lots count each store's entries up to this seq
    version: Seq = 0


# ---------------------------------------------------------------------------- recommendations (issue 17, H6)


class RecommendedItem(msgspec.Struct, frozen=True, kw_only=True):
    sku: Id
    name: Field | None = None
    reason: Label  # "bought-with:<sku>" (a co-purchase rule) or "best-seller" (cold start)
    score: Annotated[float, Meta(ge=0, le=1e9)] = 0.0


class MemberRecommendations(ChangeData, frozen=True, kw_only=True):
    """Next-best items for a member, as HQ last computed them (tenpo.cloud.analytics); the clerk's
    member profile shows them, offline too (docs/analytics.md)."""

    KIND: ClassVar[str] = "member.recommendations"

    member_id: Id
    items: Annotated[list[RecommendedItem], Meta(max_length=50)] = []
    as_of: Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")] | None = None
    version: Seq = 0


# ---------------------------------------------------------------------------- beacon ids (issue 14, H5)


class BeaconDayKey(msgspec.Struct, frozen=True, kw_only=True):
    """One JST day's beacon key of a member (tenpo.shared.beacon_id.day_key), 16 bytes in hex."""

    day: Annotated[str, Meta(pattern=r"^\d{8}$")]
    key: Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$")]


class MemberBeaconKeys(ChangeData, frozen=True, kw_only=True):
    """A member's beacon day keys for today and tomorrow (JST): the store computes the member app's
    rotating identifiers of those days without holding the member's secret (docs/beacons.md). Adds
    to what the store holds for the member (a day given again replaces its key)."""

    KIND: ClassVar[str] = "member.beacon_keys"

    member_id: Id
    keys: Annotated[list[BeaconDayKey], Meta(min_length=1, max_length=2)]


CHANGE_DATA: tuple[type[ChangeData], ...] = (
    ProductUpsert, MemberUpsert, MemberErase, PointsBalance, StockLevel, StockCorrection, MemberMerge,
    MemberUnmerge, AsnUpsert, AsnClosed, PurchaseRecorded, MemberRules,
    MemberLoyalty,
    ReservationUpsert,  # issue 18
    DeliveryUpsert,  # issue 18 §7: お取り寄せ for home delivery
    MemberRecommendations,  # issue 17 (H6)
    MemberBeaconKeys,  # issue 14 (H5, H12: day keys)
)  # fmt: skip

CHANGE_KINDS: dict[str, type[ChangeData]] = {c.KIND: c for c in CHANGE_DATA}

# Snapshot entities carry rows in the shape of these kinds (docs/protocol.md, SnapshotChunk).
SNAPSHOT_ROWS: dict[str, type[ChangeData]] = {
    "products": ProductUpsert, "members": MemberUpsert, "stock": StockLevel, "asns": AsnUpsert,
    "member_rules": MemberRules,
    "loyalty": MemberLoyalty,  # issue 17 (H7)
    "beacon_keys": MemberBeaconKeys,  # issue 14 (H5, H12: day keys)
}  # fmt: skip


class UnknownChange(ValueError):
    """A change kind (or snapshot entity) this code does not know."""


def change_type(kind: str) -> type[ChangeData]:
    struct = CHANGE_KINDS.get(kind)
    if struct is None:
        raise UnknownChange(f"unknown change kind {kind!r}")
    return struct


def decode_change(kind: str, data: Any) -> ChangeData:
    """A change's data as its Struct; UnknownChange or PayloadMismatch (naming the field) otherwise."""
    return convert(data, change_type(kind))


C = TypeVar("C", bound=ChangeData)
RowsHandler = Callable[[Any, str, list[Any], "int | None"], None]


def rows_of(struct: type[C]) -> Callable[[RowsHandler], RowsHandler]:
    """Decorate a store's feed handler ``(conn, store_id, rows, version)`` so each row reaches it as
    ``struct``: rows already decoded pass through, plain dicts (a test's fixture rows) are decoded,
    and one that does not fit raises PayloadMismatch (a ValueError) naming the field."""

    def wrap(handler: RowsHandler) -> RowsHandler:
        @functools.wraps(handler)
        def decoded(conn: Any, store_id: str, rows: list[Any], version: int | None) -> None:
            handler(conn, store_id, [r if isinstance(r, struct) else convert(r, struct) for r in rows], version)

        return decoded

    return wrap


def check_change(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """HQ's guard before a change goes into the feed: ``data`` unchanged if it fits its kind."""
    decode_change(kind, data)
    return data


__all__ = ["PayloadMismatch", "UnknownChange", "decode_change", "check_change", "rows_of", "CHANGE_KINDS",
           "SNAPSHOT_ROWS"]
