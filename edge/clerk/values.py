"""The values the clerk's data layer hands to the panels (one per panel read)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tenpo.edge import replica
from tenpo.edge.loyalty import Standing  # issue 17 (H7)
from tenpo.edge.recommendations import Recommended


@dataclass(frozen=True, slots=True)
class HomeStatus:
    store_id: str
    store_name: str
    online: bool
    agent_running: bool
    link_changed_at: float | None
    backlog: int
    oldest_age_s: float | None
    last_seq: int
    acked_seq: int
    feed_cursor: int
    alerts: tuple[str, ...]
    last_sync_at: float | None = None  # last time HQ acknowledged our events or sent changes


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """The status line every panel shows."""

    online: bool
    agent_running: bool
    backlog: int  # events not yet acknowledged by HQ


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: str
    sku: str
    name: str
    qty: int
    from_store: str
    customer: str  # member name or the name/phone given
    status: str  # requested until HQ answers
    created_at: float


@dataclass(frozen=True, slots=True)
class Profile:
    member: replica.Member
    ledger: tuple[tuple[float, int, str, str | None], ...]  # (at, delta, kind, ref), newest first
    purchases: tuple[tuple[str, str, int, int], ...]  # (at ISO, receipt_no, total, points earned)
    purchases_source: str  # where the history comes from, said on screen
    recommendations: tuple[Recommended, ...] = ()  # HQ's next-best items (issue 17), kept offline
    loyalty: Standing | None = None  # rank and expiring points from HQ's last change (issue 17, H7), offline too


@dataclass(frozen=True, slots=True)
class StockLine:
    store_id: str
    sku: str
    jan: str | None
    name: str
    on_hand: int
    as_of: float | None  # None: this store, live
    variant: str = ""  # "ネイビー · M" for a variant of a style (tenpo.shared.variants), else ""


@dataclass(frozen=True, slots=True)
class ArrivalLine:
    member_id: str
    name: str
    kana: str
    tier: str
    points: int
    arrived_at: float
    present: bool
    last_purchase_at: float | None
    last_purchase_total: int | None


@dataclass(frozen=True, slots=True)
class DockView:
    session: dict[str, Any]  # the agent's live read session: open, reads, tags ({} when no reader)
    service_state: str | None
    inspections: tuple[Any, ...]  # InspectionRecord, newest first
    names: dict[str, str] = field(default_factory=dict)  # GTIN-14 -> product name
    next_asn: tuple[str, int] | None = None  # (shipment id, units) of the open ASN a delivery would match first
    agent_running: bool = False  # replica.agent_link: the one place that decides it


@dataclass(frozen=True, slots=True)
class Preview:
    sale: Any | None  # tenpo.edge.checkout.Sale priced without payment, or None with an error
    error: str | None
    member_name: str | None = None
    member_points: int | None = None
