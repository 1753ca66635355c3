"""Store authority at HQ, as pure rules: may this store say this? (docs/authority.md)

A store's key proves which store sent an event, not that the store may say it. These functions take
the decoded event and the facts HQ looked up (who registered the member, how many contact edits the
store made this hour, the sale a points entry names) and answer ``None`` (allowed) or a
:class:`Refusal` naming the rule. No database, no clock: tenpo.cloud.authority_check looks the facts
up and records what is refused.

Rules (each refusal names one):

- ``member-owner``: a store changes only members it registered (the provisional id ``{store}-…``, or
  after a merge any store record behind the golden member), unless the contact rule allows it;
- ``member-fields``: another store's edit, even with the member present, touches only contact
  fields (name, kana, phone, e-mail, consent);
- ``contact-rate``: at most ``contact_edits_per_hour`` such edits per store per hour;
- ``points-kind``: ``adjustment`` entries are HQ's own (conflict resolution, imports), never a store's;
- ``points-link``: a points entry names (``ref``) a sale or refund of the same store that follows it
  within ``link_window`` events of the store's stream (the store writes entries, then their sale, in one
  transaction); accrual and redemption belong to a sale, reversal to a refund;
- ``points-member``: the sale is the member's (its ``member_id`` or one of its ``points_entries``);
- ``points-cap``: accrual within ``max_points_per_100_yen`` of the money paid and ``max_points_per_sale``,
  redemption within the sale's total, a reversal back to the member within the refunded total;
- ``reservation-owner``: a store answers (confirms, rejects, readies, hands over) only reservations it holds,
  ships only its own hold and only to its pickup store, and reports arrived only what is collected there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tenpo.shared.events import MemberUpdated, PointsEntry, SaleCompleted

MEMBER_OWNER = "member-owner"
MEMBER_FIELDS = "member-fields"
CONTACT_RATE = "contact-rate"
POINTS_KIND = "points-kind"
POINTS_LINK = "points-link"
POINTS_MEMBER = "points-member"
POINTS_CAP = "points-cap"
RESERVATION_OWNER = "reservation-owner"
RULES = (MEMBER_OWNER, MEMBER_FIELDS, CONTACT_RATE, POINTS_KIND, POINTS_LINK, POINTS_MEMBER, POINTS_CAP,
         RESERVATION_OWNER)  # fmt: skip

# What a store that did not register the member may change with the member at the counter.
CONTACT_FIELDS = ("name", "kana", "phone", "email", "consent")
OWNER_ONLY_FIELDS = ("card_no", "line_user_id", "custom")

SALE_TYPES = ("sale.completed", "sale.refunded")
# Which kind of sale a points entry of each kind must belong to.
_SALE_KIND_FOR = {"accrual": "sale", "redemption": "sale", "reversal": "refund"}


@dataclass(frozen=True, slots=True)
class AuthorityConfig:
    """What HQ allows; every figure is a setting (docs/authority.md, `authority.rules`)."""

    contact_edits_per_hour: int = 20  # per store: another store's members, with the member present
    max_points_per_100_yen: int = 10  # ten times the default earn rate (1 point per 100 yen)
    max_points_per_sale: int = 100_000
    link_window: int = 16  # a points entry's sale follows it within this many events of the stream


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why HQ refuses an event: the rule and a sentence an operator can act on."""

    rule: str
    detail: str

    def __str__(self) -> str:
        return f"refused by authority rule {self.rule}: {self.detail}"


# ---------------------------------------------------------------------------- members


def id_store(member_id: str) -> str | None:
    """The store a provisional id ``{store}-{suffix}`` names (store ids may hold ``-``; suffixes do not);
    None for a golden or imported id."""
    store, dash, suffix = member_id.rpartition("-")
    return store if dash and store and suffix else None


def registered_by(member_id: str, golden_id: str, store_source_ids: Iterable[str]) -> frozenset[str]:
    """The stores that registered a member: its own id's store, and after merges every store record
    behind its golden member."""
    ids = [member_id, golden_id, *store_source_ids]
    return frozenset(store for store in map(id_store, ids) if store is not None)


def changed_fields(p: MemberUpdated) -> tuple[str, ...]:
    return tuple(name for name in (*CONTACT_FIELDS, *OWNER_ONLY_FIELDS) if getattr(p, name) is not None)


def judge_member_update(store_id: str, p: MemberUpdated, owners: frozenset[str], edits_this_hour: int,
                        config: AuthorityConfig) -> Refusal | None:  # fmt: skip
    """A ``member.updated`` from ``store_id``; ``owners`` registered the member, ``edits_this_hour`` is
    how many contact edits of other stores' members HQ already allowed this store in the last hour."""
    if store_id in owners:
        return None
    registered = ", ".join(sorted(owners)) or "HQ (no store)"
    if p.clerk_id is None or not p.member_present:
        return Refusal(MEMBER_OWNER, f"{store_id} may not change member {p.member_id} registered at {registered}"
                                     " (another store's member: only with the member present and the clerk named)")
    owner_only = [name for name in OWNER_ONLY_FIELDS if getattr(p, name) is not None]
    if owner_only:
        return Refusal(MEMBER_FIELDS, f"{store_id} may change only contact fields of member {p.member_id}"
                                      f" registered at {registered}, not {', '.join(owner_only)}")
    if edits_this_hour >= config.contact_edits_per_hour:
        return Refusal(CONTACT_RATE, f"{store_id} already changed {edits_this_hour} members of other stores in the"
                                     f" last hour (limit {config.contact_edits_per_hour}); member {p.member_id}"
                                     f" by clerk {p.clerk_id} not changed")
    return None


def is_contact_edit(store_id: str, owners: frozenset[str]) -> bool:
    """An allowed edit of another store's member: counted against the hourly limit."""
    return store_id not in owners


# ---------------------------------------------------------------------------- reservations

RESERVATION_ANSWERS = frozenset({"reservation.confirmed", "reservation.rejected", "reservation.ready",
                                 "reservation.picked_up", "reservation.shipped", "reservation.arrived"})  # fmt: skip


@dataclass(frozen=True, slots=True)
class HeldReservation:
    """What HQ's row says about a reservation a store acts on."""

    reservation_id: str
    store_id: str  # holds it now (the pickup store once it arrived there)
    pickup_store: str | None
    transfer_id: str | None  # set once the holding store shipped it to the pickup store


def judge_reservation(store_id: str, kind: str, held: HeldReservation, to_store: str | None = None) -> Refusal | None:
    """A store's ``reservation.*`` answer (``kind``) for ``held``. The holding store answers; once it shipped
    the units, the pickup store may answer too (it may have sold them before it heard of a cancellation)."""
    rid, holder = held.reservation_id, held.store_id
    if kind == "reservation.arrived":
        if store_id != held.pickup_store or held.pickup_store == holder and held.transfer_id is None:
            return Refusal(RESERVATION_OWNER, f"{store_id} reported reservation {rid} arrived: it is not collected"
                                              f" there (held at {holder}, collected at {held.pickup_store or holder})")
        return None
    if kind == "reservation.shipped":
        if store_id != holder:
            return Refusal(RESERVATION_OWNER, f"{store_id} shipped reservation {rid}, held at {holder}")
        if to_store != held.pickup_store or to_store == holder:
            return Refusal(RESERVATION_OWNER, f"{store_id} shipped reservation {rid} to {to_store}: it is collected"
                                              f" at {held.pickup_store or holder}")
        return None
    if store_id == holder or (held.transfer_id is not None and store_id == held.pickup_store):
        return None
    what = kind.removeprefix("reservation.")
    return Refusal(RESERVATION_OWNER, f"{store_id} sent {what} for reservation {rid}, held at {holder}")


# ---------------------------------------------------------------------------- points


def judge_points_alone(store_id: str, p: PointsEntry) -> Refusal | None:
    """What can be said of a points entry before its sale is seen."""
    if p.kind == "adjustment":
        return Refusal(POINTS_KIND, f"{store_id} may not send a points adjustment ({p.delta:+,} for member"
                                    f" {p.member_id}): adjustments are made at HQ")
    if not p.ref:
        return Refusal(POINTS_LINK, f"{p.delta:+,} points for member {p.member_id} name no sale, refund or"
                                    f" redemption of {store_id} (no ref)")
    return None


def no_sale(store_id: str, p: PointsEntry, window: int) -> Refusal:
    return Refusal(POINTS_LINK, f"{p.delta:+,} points for member {p.member_id}: no sale or refund {p.ref} of"
                                f" {store_id} within the {window} events after the entry")


def earn_cap(sale: SaleCompleted, config: AuthorityConfig) -> int:
    """The most points a sale may earn: on the money paid (total less points redeemed)."""
    paid = max(sale.total - max(sale.points_redeemed, 0), 0)
    return min(paid // 100 * config.max_points_per_100_yen, config.max_points_per_sale)


def judge_points_group(store_id: str, sale: SaleCompleted, entries: Sequence[PointsEntry],
                       config: AuthorityConfig) -> list[Refusal | None]:  # fmt: skip
    """The points entries naming ``sale`` (a sale or refund of ``store_id`` that followed them), in
    stream order: one answer each. Amounts add up across the entries of one sale, so splitting a
    grant into many entries does not get past a cap."""
    members = {sale.member_id, *(e.member_id for e in sale.points_entries)} - {None}
    cap = earn_cap(sale, config)
    earned = redeemed = returned = 0
    answers: list[Refusal | None] = []
    kind = type(sale).KIND

    def what(p: PointsEntry) -> str:  # only for a refusal: most entries are allowed
        return f"{p.delta:+,} points ({p.kind}) for member {p.member_id} on {kind} {sale.receipt_no}"

    for p in entries:
        if _SALE_KIND_FOR.get(p.kind) != kind:
            answers.append(Refusal(POINTS_LINK, f"{what(p)}: a {p.kind} belongs to a {_SALE_KIND_FOR.get(p.kind)}"))
            continue
        if p.member_id not in members:
            answers.append(Refusal(POINTS_MEMBER, f"{what(p)}: the {kind} is not member {p.member_id}'s"))
            continue
        refusal: Refusal | None = None
        if p.kind == "accrual" and p.delta > 0:
            if earned + p.delta > cap:
                refusal = Refusal(POINTS_CAP, f"{what(p)}: more than the {cap:,} a ¥{sale.total:,} sale may earn"
                                              f" ({config.max_points_per_100_yen} per ¥100, at most"
                                              f" {config.max_points_per_sale:,} a sale)")
            else:
                earned += p.delta
        elif p.kind == "redemption":
            if -p.delta < 0 or redeemed - p.delta > max(sale.total, 0):
                refusal = Refusal(POINTS_CAP, f"{what(p)}: a redemption is negative and at most the ¥{sale.total:,}"
                                              " to pay")
            else:
                redeemed -= p.delta
        elif p.kind == "reversal" and p.delta > 0:
            if returned + p.delta > abs(sale.total):
                refusal = Refusal(POINTS_CAP, f"{what(p)}: more points back than the ¥{abs(sale.total):,} refunded")
            else:
                returned += p.delta
        answers.append(refusal)
    return answers


def refusals_text(counts: Sequence[tuple[str, int]], limit: int = 3) -> str:
    """The HQ monitor's alert: ``⚠ authority refused S002×3 S007×1`` (most refused stores first)."""
    ranked = sorted(counts, key=lambda item: (-item[1], item[0]))
    shown = " ".join(f"{store}×{count}" for store, count in ranked[:limit])
    more = f" +{len(ranked) - limit}" if len(ranked) > limit else ""
    return f"⚠ authority refused {shown}{more} (d)"
