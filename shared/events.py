"""The catalogue of upstream event types: one msgspec Struct per (type, schema) payload.

The store builds every outbox payload from these Structs (tenpo.edge.outbox.append) and HQ decodes
every payload into its Struct before planning (tenpo.cloud.effects.plan_event), so both sides agree
on one definition. docs/protocol.md lists the same types; tests/test_event_catalogue.py keeps the two
in step.

Version rule (like the envelope's ``v``): a payload carries its type's ``schema`` number. Adding an
optional field keeps the number (readers ignore fields they do not know); a change an older reader
would misread gets a new Struct with ``SCHEMA = 2``, and HQ keeps the old one for events still queued.

Ranges: every integer HQ stores fits a signed 64-bit column and a plausible business range, and
every string has a length bound, so a hostile or broken payload is refused at decode time with the
field named instead of failing deep inside the database driver.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from .ids import ID_REGEX, STORE_ID_REGEX
from .payload_convert import PayloadMismatch as PayloadMismatch  # re-exported: the catalogues raise it
from .payload_convert import UnknownEvent as UnknownEvent
from .payload_convert import convert as convert
from .payload_convert import mismatch as mismatch

# ---------------------------------------------------------------------------- bounded values

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Seq = Annotated[int, Meta(ge=0, le=INT64_MAX)]  # sequence numbers, versions, cursors
Quantity = Annotated[int, Meta(ge=-1_000_000_000, le=1_000_000_000)]  # units in one movement
Level = Annotated[int, Meta(ge=-(10**15), le=10**15)]  # a sum of movements (on hand)
Yen = Annotated[int, Meta(ge=-(10**13), le=10**13)]
Points = Annotated[int, Meta(ge=-(10**12), le=10**12)]
Rate = Annotated[int, Meta(ge=0, le=100)]  # tax rate in percent
# member, sku, receipt, visit... ids: one strict pattern (tenpo.shared.ids), as they reach file names and SQL
Id = Annotated[str, Meta(pattern=ID_REGEX, max_length=128)]
StoreId = Annotated[str, Meta(pattern=STORE_ID_REGEX)]
Label = Annotated[str, Meta(min_length=1, max_length=128)]  # names from configuration: zones, rules, channels
Word = Annotated[str, Meta(min_length=1, max_length=64)]  # reasons, kinds, locations, tenders
Field = Annotated[str, Meta(min_length=1, max_length=256)]  # a member's name, email, a product name
Text = Annotated[str, Meta(max_length=1024)]
# Wall-clock readings from a store: between 2000 and 2100 (NaN and infinities fail the bounds).
UnixTime = Annotated[float, Meta(ge=946_684_800.0, le=4_102_444_800.0)]
Epoch = Annotated[float, Meta(ge=0.0, le=4_102_444_800.0)]  # a time HQ only records
Seconds = Annotated[float, Meta(ge=0.0, le=10**9)]

PointsKind = Literal["accrual", "redemption", "adjustment", "reversal"]
SubjectKind = Literal["member", "beacon"]


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event payload; ``TYPE`` and ``SCHEMA`` name it in the catalogue."""

    TYPE: ClassVar[str] = ""
    SCHEMA: ClassVar[int] = 1


# ---------------------------------------------------------------------------- members


class MemberRegistered(Payload, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "member.registered"

    member_id: Id  # provisional: "{store}-..."
    name: Field | None = None
    kana: Field | None = None
    phone: Field | None = None  # E.164
    email: Field | None = None
    card_no: Field | None = None
    line_user_id: Field | None = None
    consent: dict[Word, bool] = {}
    custom: dict[Word, Any] = {}
    home_store: StoreId | None = None


class MemberUpdated(Payload, frozen=True, kw_only=True):
    """Any of the registration fields; absent (null) fields keep HQ's value."""

    TYPE: ClassVar[str] = "member.updated"

    member_id: Id
    name: Field | None = None
    kana: Field | None = None
    phone: Field | None = None
    email: Field | None = None
    card_no: Field | None = None
    line_user_id: Field | None = None
    consent: dict[Word, bool] | None = None
    custom: dict[Word, Any] | None = None
    # Store authority (docs/authority.md): a store that did not register the member may change its contact
    # fields only with the member at the counter, recorded with the clerk who checked them.
    clerk_id: Id | None = None
    member_present: bool = False


class MemberViewed(Payload, frozen=True, kw_only=True):
    """The personal-data audit trail: a clerk opened or exported a member's profile."""

    TYPE: ClassVar[str] = "member.viewed"

    clerk_id: Id
    member_id: Id
    action: Literal["view", "export"]
    at: Epoch | None = None  # None: HQ's receipt time


# ---------------------------------------------------------------------------- ledgers


class StockMoved(Payload, frozen=True, kw_only=True):
    """One stock ledger entry (sale, return, receipt...)."""

    TYPE: ClassVar[str] = "stock.moved"

    sku: Id
    delta: Quantity
    reason: Field
    location: Word = "floor"
    ref: Field | None = None


class StockAdjusted(StockMoved, frozen=True, kw_only=True):
    """A manual stock adjustment; the same entry as stock.moved."""

    TYPE: ClassVar[str] = "stock.adjusted"


class PointsEntry(Payload, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "points.entry"

    member_id: Id
    delta: Points
    kind: PointsKind
    ref: Field | None = None
    # loyalty (issue 17, docs/loyalty.md): an accrual says the rank it was earned at, that rank's multiplier
    # and the points at x1, so HQ can hold it against the rank it had sent; campaign points their last good day.
    rank: Label | None = None
    multiplier_pct: Annotated[int, Meta(ge=0, le=10_000)] | None = None
    base: Points | None = None
    expires_on: Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")] | None = None


# ---------------------------------------------------------------------------- sales


class SaleLine(msgspec.Struct, frozen=True, kw_only=True):
    sku: Id
    gtin: Word | None = None
    name: Field
    qty: Quantity
    unit_price: Yen
    tax_class: Word
    rate: Rate
    discount: Yen = 0
    total: Yen
    serial: Word | None = None
    code: Text = ""
    of_line: Annotated[int, Meta(ge=1, le=100_000)] | None = None


# In a sale's lists HQ reads only the tax, the SKUs and the members: the other fields default, so a
# minimal payload (a hand-made one, an older store's) still fits.


class SaleRate(msgspec.Struct, frozen=True, kw_only=True):
    rate: Rate = 0
    lines: Yen = 0
    discount: Yen = 0
    taxable: Yen = 0
    tax: Yen


class RateTax(msgspec.Struct, frozen=True, kw_only=True):
    taxable: Yen
    tax: Yen


class ReceiptDiscount(msgspec.Struct, frozen=True, kw_only=True):
    label: Text
    amount: Yen


class SalePayment(msgspec.Struct, frozen=True, kw_only=True):
    tender: Word
    amount: Yen


class SaleStockMovement(msgspec.Struct, frozen=True, kw_only=True):
    sku: Id
    qty: Quantity = 0
    serial: Word | None = None


class SalePointsEntry(msgspec.Struct, frozen=True, kw_only=True):
    member_id: Id
    kind: Word | None = None  # the engine's kind (accrue, redeem, ...); the ledger has the protocol's
    points: Points = 0


class SaleCompleted(Payload, frozen=True, kw_only=True):
    """A sale as the store's checkout records it (tenpo.edge.checkout.model.sale_to_json), plus
    ``feed_cursor``: how far the store had read HQ's change feed when it sold."""

    TYPE: ClassVar[str] = "sale.completed"
    KIND: ClassVar[str] = "sale"

    receipt_no: Id
    kind: Word
    refund_of: Id | None = None
    tax_rounding: Word | None = None
    at: Annotated[str, Meta(min_length=1, max_length=64)]  # ISO 8601 with offset
    prices_include_tax: bool = True
    member_id: Id | None = None
    lines: list[SaleLine] = []
    subtotal: Yen = 0
    receipt_discounts: list[ReceiptDiscount] = []
    tax_by_rate: dict[Word, RateTax] = {}
    rates: list[SaleRate]
    total: Yen
    payments: list[SalePayment] = []
    change: Yen = 0
    points_earned: Points
    points_redeemed: Points
    points_balance_after: Points | None = None
    stock_movements: list[SaleStockMovement]
    points_entries: list[SalePointsEntry]
    feed_cursor: Seq | None = None


class SaleRefunded(SaleCompleted, frozen=True, kw_only=True):
    """A refund of (part of) an earlier sale: ``refund_of`` names it."""

    TYPE: ClassVar[str] = "sale.refunded"
    KIND: ClassVar[str] = "refund"


# ---------------------------------------------------------------------------- inspections, clerks


class InspectionCompleted(Payload, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "inspection.completed"

    inspection_id: Id
    shipment_id: Id | None = None
    status: Literal["accepted", "held"]
    summary: dict[Word, Any]
    at: Epoch
    by: Id | None = None


class ReservationRequested(Payload, frozen=True, kw_only=True):
    """A pickup reservation (取り置き) for a product held at another store."""

    TYPE: ClassVar[str] = "reservation.requested"

    reservation_id: Id
    sku: Id
    qty: Annotated[int, Meta(ge=1, le=1_000_000)]
    from_store: StoreId
    pickup_store: StoreId | None = None
    member_id: Id | None = None
    customer: Text | None = None
    clerk_id: Id
    at: Epoch | None = None


class DeliveryRequested(Payload, frozen=True, kw_only=True):
    """お取り寄せ for home delivery (issue 18 §7): the clerk found the size at ``from_store``, which holds it (a
    reservation, as for a 取り置き) and ships it to the customer. The address is personal data: the outbox seals
    the event at rest (edge/membership/sealing.py) and the stores keep it sealed."""

    TYPE: ClassVar[str] = "delivery.requested"

    reservation_id: Id
    sku: Id
    qty: Annotated[int, Meta(ge=1, le=1_000_000)]
    from_store: StoreId
    member_id: Id | None = None
    customer: Annotated[str, Meta(min_length=1, max_length=1024)]  # the name to deliver to
    address: Annotated[str, Meta(min_length=1, max_length=1024)]  # postal code and address, one line
    phone: Text | None = None
    clerk_id: Id
    at: Epoch | None = None


# ---------------------------------------------------------------------------- reservations at the holding store (issue 18)


class ReservationDecided(Payload, frozen=True, kw_only=True):
    """Base of the holding store's answers to a reservation HQ sent it (change ``reservation.upsert``)."""

    reservation_id: Id
    sku: Id
    qty: Annotated[int, Meta(ge=1, le=1_000_000)]
    clerk_id: Id | None = None  # None: the agent decided on its own
    reason: Text | None = None
    at: Epoch | None = None


class ReservationConfirmed(ReservationDecided, frozen=True, kw_only=True):
    """The store's available stock covered the quantity: it is held (available = on_hand - reserved)."""

    TYPE: ClassVar[str] = "reservation.confirmed"


class ReservationRejected(ReservationDecided, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "reservation.rejected"


class ReservationReady(ReservationDecided, frozen=True, kw_only=True):
    """Picked from the shelf and waiting at the counter."""

    TYPE: ClassVar[str] = "reservation.ready"


class ReservationPickedUp(ReservationDecided, frozen=True, kw_only=True):
    """Handed over through checkout: the sale ``receipt_no`` consumed the reservation."""

    TYPE: ClassVar[str] = "reservation.picked_up"

    receipt_no: Id


class ReservationShipped(ReservationDecided, frozen=True, kw_only=True):
    """Collected at another store: the holding store sent the units there as transfer ``transfer_id``, whose
    ``transfer.shipped`` follows in the same transaction. In transit, held nowhere (docs/transfers.md)."""

    TYPE: ClassVar[str] = "reservation.shipped"

    transfer_id: Id
    to_store: StoreId


class ReservationArrived(ReservationDecided, frozen=True, kw_only=True):
    """The pickup store's dock accepted the transfer that carried it: ``held`` units (at most ``qty``, the
    reservation's) are held here now, in the inspection's transaction; fewer than ``qty`` is a short arrival."""

    TYPE: ClassVar[str] = "reservation.arrived"

    transfer_id: Id
    held: Annotated[int, Meta(ge=0, le=1_000_000)]


# ---------------------------------------------------------------------------- store-to-store transfers (issue 18)

Gtin = Annotated[str, Meta(pattern=r"^\d{14}$")]
HexEpc = Annotated[str, Meta(pattern=r"^(?:[0-9A-F]{2}){4,32}$")]
MAX_TRANSFER_EPCS = 2000  # one event stays well under a batch's size limit; a bigger move is several transfers


class TransferLine(msgspec.Struct, frozen=True, kw_only=True):
    sku: Id
    gtin: Gtin
    qty: Annotated[int, Meta(ge=1, le=1_000_000)]


class TransferShipped(Payload, frozen=True, kw_only=True):
    """Stock sent to another store: it left this store's ledger in the same transaction (``stock.moved``
    with ``ref`` = the transfer id); HQ turns it into an ASN for the receiving store's dock inspection."""

    TYPE: ClassVar[str] = "transfer.shipped"

    transfer_id: Id
    to_store: StoreId
    lines: Annotated[list[TransferLine], Meta(min_length=1, max_length=100)]
    epcs: Annotated[list[HexEpc], Meta(max_length=MAX_TRANSFER_EPCS)] = []
    clerk_id: Id | None = None
    at: Epoch | None = None


# ---------------------------------------------------------------------------- presence


class VisitArrived(Payload, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "visit.arrived"

    visit_id: Id
    member_id: Id
    arrived_at: UnixTime
    store: StoreId | None = None


class VisitLeft(Payload, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "visit.left"

    visit_id: Id
    member_id: Id
    arrived_at: UnixTime
    left_at: UnixTime
    dwell_s: Seconds
    interrupted: bool = False
    store: StoreId | None = None


class ZoneEntered(Payload, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "zone.entered"

    stay_id: Id
    zone: Label
    subject_kind: SubjectKind
    subject_id: Label  # a member id or a zone beacon's registry name
    member_id: Id | None = None  # equals subject_id for a member, None for a zone beacon
    entered_at: UnixTime
    store: StoreId | None = None


class ZoneLeft(Payload, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "zone.left"

    stay_id: Id
    zone: Label
    subject_kind: SubjectKind
    subject_id: Label  # a member id or a zone beacon's registry name
    member_id: Id | None = None
    entered_at: UnixTime
    left_at: UnixTime
    dwell_s: Seconds
    store: StoreId | None = None


class CouponTriggered(Payload, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "coupon.triggered"

    coupon_id: Id
    member_id: Id
    rule: Label
    visit_id: Id | None = None
    triggered_at: UnixTime
    store: StoreId | None = None


# ---------------------------------------------------------------------------- stock snapshot


class SnapshotLevel(msgspec.Struct, frozen=True, kw_only=True):
    sku: Id
    location: Word = "floor"
    on_hand: Level


class StockSnapshot(Payload, frozen=True, kw_only=True):
    """The store's own stock levels once a day (edge/scheduler.py), in parts of at most 1000 lines."""

    TYPE: ClassVar[str] = "stock.snapshot"

    taken_at: UnixTime
    part: Annotated[int, Meta(ge=1, le=100_000)] = 1
    parts: Annotated[int, Meta(ge=1, le=100_000)] = 1
    levels: Annotated[list[SnapshotLevel], Meta(max_length=1000)] = []


# ---------------------------------------------------------------------------- the catalogue

PAYLOADS: tuple[type[Payload], ...] = (
    MemberRegistered, MemberUpdated, MemberViewed, StockMoved, StockAdjusted, PointsEntry, SaleCompleted,
    SaleRefunded, InspectionCompleted, ReservationRequested, VisitArrived, VisitLeft, ZoneEntered, ZoneLeft,
    CouponTriggered, StockSnapshot,
    ReservationConfirmed, ReservationRejected, ReservationReady, ReservationPickedUp,  # issue 18
    DeliveryRequested,  # issue 18 §7: お取り寄せ for home delivery
    TransferShipped,  # issue 18: store-to-store transfers
    ReservationShipped, ReservationArrived,  # issue 18: held at one store, collected at another
)  # fmt: skip

CATALOGUE: dict[tuple[str, int], type[Payload]] = {(p.TYPE, p.SCHEMA): p for p in PAYLOADS}
EVENT_TYPES: frozenset[str] = frozenset(p.TYPE for p in PAYLOADS)


def payload_type(event_type: str, schema: int = 1) -> type[Payload]:
    struct = CATALOGUE.get((event_type, schema))
    if struct is None:
        if event_type in EVENT_TYPES:
            raise UnknownEvent(f"{event_type}: unsupported schema version {schema}")
        raise UnknownEvent(f"unknown event type {event_type!r}")
    return struct


def decode_payload(event_type: str, schema: int, payload: Any) -> Payload:
    """The event's payload as its catalogue Struct; UnknownEvent or PayloadMismatch otherwise."""
    return convert(payload, payload_type(event_type, schema))


def to_payload(value: Payload) -> dict[str, Any]:
    """The JSON object an outbox row carries for ``value``."""
    return msgspec.to_builtins(value)  # type: ignore[no-any-return]
