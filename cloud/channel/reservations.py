"""Reservations at HQ: created for a channel or a store's clerk, decided by the holding store, expired
by the sweep. HQ's row is the authority; a store's answer is applied only if the state machine allows it.

States: ``requested → confirmed → ready → picked_up``, or ``rejected | expired | cancelled``; a reservation
collected at another store goes ``confirmed → in_transit → ready`` there (:func:`ship`, :func:`arrive`). HQ
serialises every creation per (store, sku) and checks HQ-side available (on hand as last reported
minus what active reservations hold) before sending one to the store, so of two channels asking for
the last unit at the same moment exactly one gets it; the store checks again with its live ledger.
Everything here runs inside the caller's transaction unless it says otherwise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tenpo.cloud.authority import RESERVATION_ANSWERS, HeldReservation, Refusal, judge_reservation
from tenpo.cloud.changes import record_changes
from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple
from tenpo.shared.channel_api import ACTIVE_STATES, FINAL_STATES, IN_TRANSIT, ReservationAnswer, StockAnswer, StoreStock
from tenpo.shared.protocol import Event

log = logging.getLogger(__name__)

_ACTIVE = "('requested', 'confirmed', 'ready')"
assert _ACTIVE == "(" + ", ".join(f"'{s}'" for s in ACTIVE_STATES) + ")"
_DUE = "('requested', 'confirmed', 'ready', 'in_transit')"  # what the sweep may expire

# state -> states it may move to, and who may move it there
STORE_MOVES: dict[str, frozenset[str]] = {
    "requested": frozenset({"confirmed", "rejected", "picked_up"}),
    "confirmed": frozenset({"ready", "rejected", "picked_up"}),
    "ready": frozenset({"rejected", "picked_up"}),
    # A sale is a fact: the store handed it over before it heard of the cancellation or the expiry.
    "expired": frozenset({"picked_up"}),
    "cancelled": frozenset({"picked_up"}),
}
HQ_MOVES: dict[str, frozenset[str]] = {
    "requested": frozenset({"expired", "cancelled"}),
    "confirmed": frozenset({"expired", "cancelled"}),
    "ready": frozenset({"expired", "cancelled"}),
    # Cancelled or expired on the way: the units arrive at the pickup store as its normal stock (docs/transfers.md).
    IN_TRANSIT: frozenset({"expired", "cancelled"}),
}
TRANSIT_S = 7 * 86400.0  # a transfer not received within a week: the reservation expires (``not_received``)
SHORT = "reservation-short"  # the conflict kind of a short arrival (tenpo.cloud.sales.conflicts resolves it)

COLUMNS = ("reservation_id", "channel", "store_id", "sku", "qty", "member_id", "customer", "pickup_store", "state",
           "reason", "receipt_no", "hold_s", "expires_at", "created_at", "updated_at", "transfer_id",
           "shipped_from")  # fmt: skip


def lock_stock(db: Central, store_id: str, sku: str) -> None:
    """Serialise reservations of one (store, sku) until commit. SQLite's write transaction already does."""
    if db.dialect == "postgresql":
        db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"reservation/{store_id}/{sku}",))


def reserved(db: Central, sku: str, store_id: str | None = None) -> dict[str, int]:
    """Units held by active reservations, per store."""
    where, params = ("AND store_id = ?", (sku, store_id)) if store_id else ("", (sku,))
    rows = db.all(f"SELECT store_id, sum(qty) FROM reservations WHERE sku = ? {where} AND state IN {_ACTIVE}"
                  " GROUP BY store_id", params)  # fmt: skip
    return {store: int(total) for store, total in rows}


def on_hand(db: Central, store_id: str, sku: str) -> int:
    return int(db.scalar("SELECT on_hand FROM stock_levels WHERE store_id = ? AND sku = ?", (store_id, sku), 0))


def next_id(db: Central) -> str:
    value = db.scalar(
        "INSERT INTO counters(name, value) VALUES ('reservation', 1)"
        " ON CONFLICT(name) DO UPDATE SET value = counters.value + 1 RETURNING value"
    )
    return f"R{int(value):08d}"


def row(db: Central, reservation_id: str, lock: bool = False) -> dict[str, Any] | None:
    found = db.one(f"SELECT {', '.join(COLUMNS)} FROM reservations WHERE reservation_id = ?"
                   + (db.lock_suffix() if lock else ""), (reservation_id,))  # fmt: skip
    return None if found is None else dict(zip(COLUMNS, found))


def held(record: dict[str, Any]) -> HeldReservation:
    return HeldReservation(record["reservation_id"], record["store_id"], record["pickup_store"], record["transfer_id"])


class OwnerCheck:
    """The store authority's ``reservation-owner`` check of one batch (tenpo.cloud.authority_check), before it is
    planned: a refused answer is a dead letter naming the rule and changes nothing. HQ's rows of every
    reservation the batch answers are read once, at its first answer. A reservation that arrived at the
    store earlier in the batch is the store's for the rest of it. An unknown reservation passes: it may be
    created earlier in the batch (a clerk's own hold), and :func:`move` ignores it otherwise."""

    def __init__(self, db: Central, events: Sequence[Event]) -> None:
        self._db, self._events = db, events
        self._rows: dict[str, HeldReservation] | None = None

    def refusal(self, store_id: str, kind: str, reservation_id: str, to_store: str | None) -> Refusal | None:
        if self._rows is None:
            self._rows = self._read()
        found = self._rows.get(reservation_id)
        if found is None:
            return None
        refusal = judge_reservation(store_id, kind, found, to_store)
        if refusal is None and kind == "reservation.arrived":
            self._rows[reservation_id] = replace(found, store_id=store_id)
        return refusal

    def _read(self) -> dict[str, HeldReservation]:
        ids = sorted({str(e.payload["reservation_id"]) for e in self._events if e.type in RESERVATION_ANSWERS
                      and isinstance(e.payload, dict) and isinstance(e.payload.get("reservation_id"), str)})  # fmt: skip
        rows: dict[str, HeldReservation] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for rid, store, pickup, transfer in self._db.all(
                "SELECT reservation_id, store_id, pickup_store, transfer_id FROM reservations"
                f" WHERE reservation_id IN ({', '.join('?' for _ in chunk)})", chunk,
            ):  # fmt: skip
                rows[rid] = HeldReservation(rid, store, pickup, transfer)
        return rows


def _not_owner(record: dict[str, Any], by_store: str, kind: str, to_store: str | None = None) -> bool:
    """The same rule inside the apply's hooks (a refused answer never gets here: only one the batch's own
    earlier events made wrong): logged and ignored, HQ's state stands."""
    refusal = judge_reservation(by_store, kind, held(record), to_store)
    if refusal is not None:
        log.warning("reservation %s: %s; ignored", record["reservation_id"], refusal.detail)
    return refusal is not None


def answer(record: dict[str, Any]) -> ReservationAnswer:
    return ReservationAnswer(
        reservation_id=record["reservation_id"], state=record["state"], sku=record["sku"], store_id=record["store_id"],
        qty=int(record["qty"]), member_id=record["member_id"], reason=record["reason"],
        receipt_no=record["receipt_no"], created_at=float(record["created_at"]), updated_at=float(record["updated_at"]),
        expires_at=None if record["expires_at"] is None else float(record["expires_at"]),
        pickup_store=record["pickup_store"] if record["pickup_store"] != record["store_id"] else None,
        transfer_id=record["transfer_id"], shipped_from=record["shipped_from"],
    )  # fmt: skip


def feed_changes(record: dict[str, Any], to_holding_store: bool = True) -> list[ChangeTuple]:
    """The ``reservation.upsert`` entries for the holding store and, if others, the pickup store and the
    store whose clerk asked for it (``store:S001``: its list of 取り置き shows HQ's answer)."""
    data = {key: record[key] for key in ("reservation_id", "store_id", "sku", "state", "channel", "member_id",
                                         "customer", "pickup_store", "reason", "expires_at")}  # fmt: skip
    data["qty"] = int(record["qty"])
    data["version"] = 0  # record_changes stamps the change seq
    if record.get("transfer_id"):  # only then: a store of the previous release reads the change as before
        data.update(transfer_id=record["transfer_id"], shipped_from=record["shipped_from"])
    stores = [record["store_id"]] if to_holding_store else []
    asker = record["channel"][len("store:"):] if str(record["channel"]).startswith("store:") else None
    for other in (record["pickup_store"], asker):
        if other and other != record["store_id"] and other not in stores:
            stores.append(other)
    return [("reservation.upsert", record["reservation_id"], store, dict(data)) for store in stores]


def create(
    db: Central, *, reservation_id: str, channel: str, store_id: str, sku: str, qty: int, member_id: str | None,
    customer: str | None, pickup_store: str | None, hold_s: float, confirm_s: float, now: float,
    held_by_store: bool = False,
) -> tuple[dict[str, Any], list[ChangeTuple]]:  # fmt: skip
    """A new reservation: ``requested`` (sent to the store) when HQ-side available covers ``qty``, else
    ``rejected`` with reason ``not_available`` (nothing sent). Returns the row and its feed entries.
    ``held_by_store``: a clerk's hold of its own store's stock, already decided there (its live ledger is
    the better judge than HQ's last report): recorded ``requested``, its confirmation follows, nothing sent."""
    lock_stock(db, store_id, sku)
    available = on_hand(db, store_id, sku) - reserved(db, sku, store_id).get(store_id, 0)
    known_store = db.scalar("SELECT 1 FROM stores WHERE store_id = ?", (store_id,)) is not None
    if held_by_store:
        state, reason, expires = "requested", None, now + confirm_s
    elif not known_store:
        state, reason, expires = "rejected", "unknown_store", None
    elif qty > available:
        state, reason, expires = "rejected", f"not_available: {max(available, 0)} available at HQ's last report", None
    else:
        state, reason, expires = "requested", None, now + confirm_s
    record = {"reservation_id": reservation_id, "channel": channel, "store_id": store_id, "sku": sku, "qty": qty,
              "member_id": member_id, "customer": customer, "pickup_store": pickup_store, "state": state,
              "reason": reason, "receipt_no": None, "hold_s": hold_s, "expires_at": expires, "created_at": now,
              "updated_at": now, "transfer_id": None, "shipped_from": None}  # fmt: skip
    db.execute(f"INSERT INTO reservations({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
               tuple(record[c] for c in COLUMNS))  # fmt: skip
    if held_by_store:
        return record, []
    if state == "requested":
        return record, feed_changes(record)
    return record, feed_changes(record, to_holding_store=False)  # the pickup store learns of the refusal


def move(db: Central, reservation_id: str, to: str, now: float, *, by_store: str | None = None,
         reason: str | None = None, receipt_no: str | None = None) -> list[ChangeTuple]:  # fmt: skip
    """Apply one transition if the state machine allows it (``by_store``: the holding store's answer, else HQ's
    decision); the feed entries it causes. Anything else is logged and ignored: HQ's state stands."""
    record = row(db, reservation_id, lock=True)
    if record is None:
        log.warning("reservation %s: %s for an unknown reservation", reservation_id, to)
        return []
    if by_store is not None and _not_owner(record, by_store, f"reservation.{to}"):
        return []
    moves = STORE_MOVES if by_store is not None else HQ_MOVES
    if to not in moves.get(record["state"], frozenset()):
        if record["state"] != to:
            log.info("reservation %s: %s -> %s not allowed; stays %s", reservation_id, record["state"], to,
                     record["state"])  # fmt: skip
        return []
    expires = record["expires_at"]
    if to == "confirmed":
        expires = now + float(record["hold_s"])  # to be collected (or, for another store, sent) by then
    cur = db.execute(
        "UPDATE reservations SET state = ?, reason = coalesce(?, reason), receipt_no = coalesce(?, receipt_no),"
        " expires_at = ?, updated_at = ? WHERE reservation_id = ? AND state = ?",
        (to, reason, receipt_no, expires, now, reservation_id, record["state"]),
    )
    if not cur.rowcount:
        return []
    record.update(state=to, reason=reason or record["reason"], receipt_no=receipt_no or record["receipt_no"],
                  expires_at=expires, updated_at=now)  # fmt: skip
    # The holding store knows what it decided itself; it must hear what HQ decided.
    return feed_changes(record, to_holding_store=by_store is None)


def sweep(db: Central, now: float, limit: int = 500) -> int:
    """The scheduled job: a store that never answered (``requested`` past its deadline) and a no-show
    (``confirmed``/``ready`` past its pickup deadline) expire; the stores and the channel are told.
    Its own transaction; idempotent, so several aggregators may run it."""
    with db.transaction():
        due = db.all("SELECT reservation_id, state, store_id, pickup_store FROM reservations"
                     f" WHERE state IN {_DUE} AND expires_at < ? ORDER BY expires_at LIMIT ?",
                     (now, limit))  # fmt: skip
        changes: list[ChangeTuple] = []
        for reservation_id, state, store_id, pickup_store in due:
            if state == "requested":
                why = "store_did_not_answer"
            elif state == IN_TRANSIT:
                why = "not_received"  # the transfer never reached the pickup store's dock
            else:
                why = "not_picked_up" if pickup_store in (None, store_id) else "not_shipped"
            changes += move(db, reservation_id, "expired", now, reason=why)
        record_changes(db, changes, now)
    if due:
        log.info("reservations: %d expired", len(due))
    return len(due)


# ---------------------------------------------------------------------------- collected at another store


def ship(db: Central, reservation_id: str, by_store: str, transfer_id: str, to_store: str,
         now: float) -> list[ChangeTuple]:  # fmt: skip
    """The holding store sent it to the pickup store (``reservation.shipped``): ``in_transit``, held nowhere, until
    the pickup store's dock receives the transfer. The pickup store hears of it before the transfer's ASN
    (the event comes first in the sender's outbox), so its dock knows what the delivery is for."""
    record = row(db, reservation_id, lock=True)
    if record is None or _not_owner(record, by_store, "reservation.shipped", to_store):
        return []
    if record["state"] not in ("confirmed", "ready"):
        # Cancelled or expired before it left: the transfer still goes; its units become the pickup store's stock.
        log.info("reservation %s: shipped while %s; stays %s", reservation_id, record["state"], record["state"])
        return []
    expires = now + TRANSIT_S
    db.execute("UPDATE reservations SET state = ?, transfer_id = ?, shipped_from = ?, expires_at = ?, updated_at = ?"
               " WHERE reservation_id = ?", (IN_TRANSIT, transfer_id, by_store, expires, now, reservation_id))  # fmt: skip
    record.update(state=IN_TRANSIT, transfer_id=transfer_id, shipped_from=by_store, expires_at=expires, updated_at=now)
    return feed_changes(record, to_holding_store=False)


def arrive(db: Central, reservation_id: str, by_store: str, transfer_id: str, held: int,
           now: float) -> list[ChangeTuple]:  # fmt: skip
    """The pickup store's dock accepted the transfer and holds ``held`` units for it (``reservation.arrived``):
    ``ready`` there, the pickup store now the holding store. Fewer than reserved: held as far as they go, the
    reason says so and a ``reservation-short`` conflict opens; none: ``rejected``. If HQ cancelled or expired it
    meanwhile, the pickup store is told again, and releases what it held."""
    record = row(db, reservation_id, lock=True)
    if record is None or _not_owner(record, by_store, "reservation.arrived"):
        return []
    if record["transfer_id"] != transfer_id:
        log.warning("reservation %s: store %s reported transfer %s arrived; it was sent by %s, ignored",
                    reservation_id, by_store, transfer_id, record["transfer_id"])  # fmt: skip
        return []
    if record["state"] != IN_TRANSIT:
        return feed_changes(record, to_holding_store=False) if record["state"] in ("cancelled", "expired") else []
    ordered = int(record["qty"])
    short = held < ordered
    reason = f"short_arrival: {held} of {ordered} arrived at {by_store}" if short else None
    state, expires = ("ready", now + float(record["hold_s"])) if held > 0 else ("rejected", None)
    qty = held if held > 0 else ordered
    db.execute("UPDATE reservations SET store_id = ?, state = ?, qty = ?, reason = ?, expires_at = ?, updated_at = ?"
               " WHERE reservation_id = ?", (by_store, state, qty, reason, expires, now, reservation_id))  # fmt: skip
    if short:
        detail = {"reservation_id": reservation_id, "transfer_id": transfer_id, "from_store": record["shipped_from"],
                  "pickup_store": by_store, "sku": record["sku"], "ordered": ordered, "arrived": held,
                  "channel": record["channel"], "state": state}  # fmt: skip
        db.execute(
            "INSERT INTO conflicts(kind, subject, store_id, level, detail, status, detected_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, 'open', ?, ?) ON CONFLICT (kind, subject) WHERE status = 'open' DO NOTHING",
            (SHORT, reservation_id, by_store, held - ordered, json.dumps(detail, ensure_ascii=False), now, now),
        )  # fmt: skip
    record.update(store_id=by_store, state=state, qty=qty, reason=reason, expires_at=expires, updated_at=now)
    return feed_changes(record)  # the pickup store decided, and learns the pickup deadline; so does the asker


def cancel(db: Central, record: dict[str, Any], now: float) -> list[ChangeTuple]:
    return move(db, record["reservation_id"], "cancelled", now, reason="cancelled by the channel")


def is_final(state: str) -> bool:
    return state in FINAL_STATES


# ---------------------------------------------------------------------------- answers sent later


def wait_for_store(db: Central, reservation_id: str, topic: str, correlation: bytes | None, deadline: float) -> None:
    db.execute("UPDATE reservations SET reply_topic = ?, reply_corr = ?, reply_deadline = ? WHERE reservation_id = ?",
               (topic, correlation or b"", deadline, reservation_id))  # fmt: skip


def due_replies(db: Central, now: float) -> list[tuple[str, bytes, ReservationAnswer]]:
    """Waiting ``reserve`` answers that can go now (the store decided, or the wait is over), each claimed
    by one UPDATE so that of several aggregators exactly one sends it. Its own transaction."""
    ready: list[tuple[str, bytes, ReservationAnswer]] = []
    due = ("SELECT reservation_id, reply_topic, reply_corr FROM reservations WHERE reply_deadline IS NOT NULL"
           " AND (state <> 'requested' OR reply_deadline <= ?)")  # fmt: skip
    if not db.all(due, (now,)):  # the common case: a read, no write lock
        return ready
    with db.transaction():
        found = db.all(due, (now,))
        for reservation_id, topic, correlation in found:
            claimed = db.execute(
                "UPDATE reservations SET reply_topic = NULL, reply_corr = NULL, reply_deadline = NULL"
                " WHERE reservation_id = ? AND reply_deadline IS NOT NULL", (reservation_id,),
            ).rowcount  # fmt: skip
            record = row(db, reservation_id)
            if claimed and record is not None:
                ready.append((str(topic), bytes(correlation or b""), answer(record)))
    return ready


# ---------------------------------------------------------------------------- stock


def stock(db: Central, sku: str, store_id: str | None, now: float) -> StockAnswer | None:
    """Each store's on hand, reserved and available for ``sku``; None if HQ knows neither the SKU nor the store."""
    where, params = ("AND s.store_id = ?", (sku, store_id)) if store_id else ("", (sku,))
    rows = db.all(
        "SELECT s.store_id, coalesce(l.on_hand, 0), s.last_seen, s.online, l.sku FROM stores s"
        f" LEFT JOIN stock_levels l ON l.store_id = s.store_id AND l.sku = ? WHERE 1 = 1 {where} ORDER BY s.store_id",
        params,
    )
    if store_id and not rows:
        return None
    known = db.scalar("SELECT 1 FROM products WHERE sku = ?", (sku,)) is not None
    if not known and not any(r[4] is not None for r in rows):
        return None
    held = reserved(db, sku, store_id)
    stores = []
    for store, level, last_seen, online, has_level in rows:
        if not store_id and has_level is None and store not in held:
            continue  # a store that never had the item: not listed
        hold = held.get(store, 0)
        stores.append(StoreStock(
            store_id=store, on_hand=int(level), reserved=hold, available=max(int(level) - hold, 0),
            as_of=None if last_seen is None else round(max(now - float(last_seen), 0.0), 3),
            reported_at=None if last_seen is None else float(last_seen), online=bool(online),
        ))  # fmt: skip
    return StockAnswer(sku=sku, stores=stores)
