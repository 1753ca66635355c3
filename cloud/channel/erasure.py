"""A member's erasure reaches their reservations and home deliveries at HQ (docs/channel.md "Erasure").

The customer's name or phone on a reservation, and the name, address and phone of an お取り寄せ, are
personal data. When the member is erased (tenpo.cloud.members.privacy) they are blanked everywhere HQ keeps
them: the ``reservations`` and ``deliveries`` rows, the change feed's ``reservation.upsert`` and
``delivery.upsert`` entries (a store reading the feed from an old cursor would be sent them again), and the
stores' ``reservation.requested`` / ``delivery.requested`` events HQ stored. What stock and the books need
stays: the SKU, quantity, stores, state, receipt and times, under the member's random id; the delivery row is
marked ``erased_at``. The stores blank their own copies when they apply ``member.erase``
(tenpo.edge.deliveries.erase_members). A delivery taken for a name and address alone, with no member, is
not reached by a member's erasure.

:func:`erase_member_history` does the same for the member's own records outside the golden row: the feed's
``member.upsert`` entries, the stores' ``member.registered`` / ``member.updated`` events, the app's field
clocks and devices.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tenpo.cloud.channel.extras_schema import FEED_KINDS_WITH_PEOPLE as _FEED_KINDS
from tenpo.cloud.db import Central

PERSONAL = ("customer", "address", "phone")  # what the rows, the feed entries and the events carry
_EVENT_TYPES = ("delivery.requested", "reservation.requested")
_EVENT_WINDOW_S = 5.0  # a store's event is stored in the transaction that created its reservation: same clock


def blanked(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without its personal values: a delivery's name and address (required by the catalogue) become
    empty text, a reservation's customer and any phone none."""
    delivery = "address" in data
    return {key: ("" if delivery and key != "phone" else None) if key in PERSONAL else value
            for key, value in data.items()}  # fmt: skip


def erase_reservations(db: Central, member_ids: Sequence[str], now: float) -> dict[str, int]:
    """Blank the personal fields of every reservation and delivery of ``member_ids`` (the golden id and the ids
    merged into it), in the caller's transaction. How many reservations, deliveries, feed entries and events."""
    marks = ", ".join("?" for _ in member_ids)
    found = db.all(f"SELECT reservation_id, channel, created_at FROM reservations WHERE member_id IN ({marks})",
                   list(member_ids))  # fmt: skip
    counts = {"reservations": len(found), "deliveries": 0, "feed_entries": 0, "events": 0}
    if not found:
        return counts
    ids = [str(r[0]) for r in found]
    for chunk in _chunks(ids):
        chunk_marks = ", ".join("?" for _ in chunk)
        db.execute(f"UPDATE reservations SET customer = NULL WHERE reservation_id IN ({chunk_marks})", chunk)
        counts["deliveries"] += db.execute(
            f"UPDATE deliveries SET customer = '', address = '', phone = NULL, erased_at = coalesce(erased_at, ?)"
            f" WHERE reservation_id IN ({chunk_marks})", [now, *chunk],
        ).rowcount  # fmt: skip
        entries = db.all(f"SELECT seq, data FROM changes WHERE kind IN {_FEED_KINDS} AND key IN ({chunk_marks})",
                         chunk)  # fmt: skip
        rewritten = [(json.dumps(blanked(json.loads(data)), ensure_ascii=False), seq) for seq, data in entries]
        if rewritten:
            db.executemany("UPDATE changes SET data = ? WHERE seq = ?", rewritten)
        counts["feed_entries"] += len(rewritten)
    for reservation_id, channel, created_at in found:
        counts["events"] += _erase_request_event(db, str(reservation_id), str(channel), float(created_at))
    return counts


def _erase_request_event(db: Central, reservation_id: str, channel: str, created_at: float) -> int:
    """The ordering store's request event, stored when HQ created the reservation from it (the index on
    ``applied_at`` finds it; the payload names the reservation). A channel's reservation has none."""
    if not channel.startswith("store:"):
        return 0
    rows = db.all(
        "SELECT stream, seq, payload FROM events WHERE applied_at BETWEEN ? AND ? AND store_id = ?"
        f" AND type IN ({', '.join('?' for _ in _EVENT_TYPES)})",
        (created_at - _EVENT_WINDOW_S, created_at + _EVENT_WINDOW_S, channel[len("store:"):], *_EVENT_TYPES),
    )  # fmt: skip
    done = 0
    for stream, seq, payload in rows:
        data = json.loads(payload)
        if data.get("reservation_id") != reservation_id:
            continue
        db.execute("UPDATE events SET payload = ? WHERE store_id = ? AND stream = ? AND seq = ?",
                   (json.dumps(blanked(data), ensure_ascii=False), channel[len("store:"):], stream, seq))  # fmt: skip
        done += 1
    return done


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# ---------------------------------------------------------------------------- the member's own records

_PERSON_TEXT = ("name", "kana", "phone", "email", "card_no", "line_user_id", "beacon_secret")
_PERSON_MAPS = ("consent", "custom")
_MEMBER_EVENT_TYPES = ("member.registered", "member.updated")


def without_person(data: dict[str, Any]) -> dict[str, Any]:
    """A member record (feed entry or store event) with its personal values gone; ids, versions and points stay."""
    return {key: None if key in _PERSON_TEXT else {} if key in _PERSON_MAPS else value for key, value in data.items()}


def erase_member_history(db: Central, member_ids: Sequence[str], stores: set[str]) -> dict[str, int]:
    """The member's name, contacts, consent and custom fields where HQ keeps them besides the golden record: the
    feed's ``member.upsert`` entries (a store reading from an old cursor), the ``member.registered`` and
    ``member.updated`` events of ``stores`` (the registering stores and those that edited the member), the
    field clocks of the app's edits, the app's devices. In the caller's transaction."""
    ids = list(member_ids)
    marks = ", ".join("?" for _ in ids)
    counts = {"feed_entries": 0, "events": 0}
    entries = db.all(f"SELECT seq, data FROM changes WHERE kind = 'member.upsert' AND key IN ({marks})", ids)
    if entries:
        db.executemany("UPDATE changes SET data = ? WHERE seq = ?",
                       [(json.dumps(without_person(json.loads(d)), ensure_ascii=False), s) for s, d in entries])  # fmt: skip
    counts["feed_entries"] = len(entries)
    editors = {str(r[0]) for r in db.all(f"SELECT DISTINCT store_id FROM authority_edits WHERE edited_id IN ({marks})",
                                         ids)}  # fmt: skip
    gone = set(ids)
    for store in sorted(stores | editors):
        rows = db.all("SELECT stream, seq, payload FROM events WHERE store_id = ? AND type IN (?, ?)",
                      (store, *_MEMBER_EVENT_TYPES))  # fmt: skip
        scrubbed = [(json.dumps(without_person(data), ensure_ascii=False), store, stream, seq)
                    for stream, seq, payload in rows
                    if (data := json.loads(payload)).get("member_id") in gone]  # fmt: skip
        if scrubbed:
            db.executemany("UPDATE events SET payload = ? WHERE store_id = ? AND stream = ? AND seq = ?", scrubbed)
        counts["events"] += len(scrubbed)
    db.execute(f"DELETE FROM member_field_clocks WHERE member_id IN ({marks})", ids)
    db.execute(f"DELETE FROM member_devices WHERE member_id IN ({marks})", ids)
    return counts
