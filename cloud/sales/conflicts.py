"""Reconciliation at HQ: detect what the ledgers show the business forbids, and resolve it by entry.

Points and stock are ledgers at HQ as at the stores, so entries two stores made offline always
merge. Two things can come out wrong and are recorded as a conflict, one open per subject:

- ``points-negative``: a member's balance below zero, typically because two stores redeemed the
  same points while neither could see the other. The conflict lists the spending entries made
  blind to each other (neither store had read the feed change carrying the other's entry), so
  both sides are in front of the operator.
- ``stock-oversold``: a store's on-hand for a product below zero after sales.
- ``transfer-short``: a store-to-store transfer whose receiving dock did not find every unit sent
  (tenpo.cloud.asn.transfers opens it); ``return-to-sender`` books the missing units back into the
  sender's stock (they never left), ``accept`` records them as lost in transit.
- ``reservation-short``: a reservation collected at another store whose transfer arrived short; it holds
  what came (docs/transfers.md). ``accept`` records that the customer was told; the stock side is the
  transfer's own conflict.

Resolution appends an entry and never edits one: ``write-off`` (points: an adjustment that brings
the balance back to zero), ``adjust`` (stock: a correcting entry to zero), or ``accept`` (record the
decision, no entry; a new conflict opens only if the same subject gets worse than it was then).
The new balance or level goes down the change feed like any other, and the audit log records who
decided what. The HQ monitor lists and resolves through this module too.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from tenpo.cloud.changes import audit, record_changes
from tenpo.cloud.db import Central
from tenpo.cloud.ledgers import points_entry, stock_entry
from tenpo.cloud.plan import ChangeTuple
from tenpo.shared.errors import UserError

POINTS = "points-negative"
STOCK = "stock-oversold"
HQ_STORE = "HQ"  # store_id of HQ's own ledger entries
HQ_STREAM = "hq"
TRANSFER = "transfer-short"  # opened by tenpo.cloud.asn.transfers
RESERVATION = "reservation-short"  # opened by tenpo.cloud.channel.reservations.arrive
ACTIONS = {POINTS: ("write-off", "accept"), STOCK: ("adjust", "accept"), TRANSFER: ("return-to-sender", "accept"),
           RESERVATION: ("accept",)}  # fmt: skip
RESOLUTIONS = ("write-off", "adjust", "return-to-sender", "accept")
MAX_ENTRIES = 50  # newest ledger rows a conflict shows


@dataclass(frozen=True, slots=True)
class Conflict:
    id: int
    kind: str
    subject: str  # member id, or "store/sku"
    store_id: str  # the store whose entries tipped it
    level: int  # balance or on-hand when last detected
    detail: dict[str, Any]
    status: str
    detected_at: float
    action: str | None = None
    note: str | None = None
    resolved_by: str | None = None
    resolved_at: float | None = None
    resolution: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


# ---------------------------------------------------------------------------- detection (apply hooks)


def check_points(db: Central, member_id: str, store_id: str, now: float) -> list[ChangeTuple]:
    """Run in the apply transaction after a sale's points entries are written."""
    balance = int(db.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (member_id,), 0))
    if balance < 0 and not _accepted_at_or_below(db, POINTS, member_id, balance):
        entries = concurrent_spending(_points_rows(db, member_id))
        _open_or_refresh(db, POINTS, member_id, store_id, balance, {"member_id": member_id, "balance": balance,
                                                                    "entries": entries}, now)  # fmt: skip
    return []


def check_stock(db: Central, store_id: str, sku: str, now: float) -> list[ChangeTuple]:
    """Run in the apply transaction after a sale's stock movements are written."""
    on_hand = int(db.scalar("SELECT on_hand FROM stock_levels WHERE store_id = ? AND sku = ?", (store_id, sku), 0))
    subject = f"{store_id}/{sku}"
    if on_hand < 0 and not _accepted_at_or_below(db, STOCK, subject, on_hand):
        rows = db.all(
            "SELECT id, store_id, stream, store_seq, delta, reason, ref, created_at FROM stock_ledger"
            " WHERE store_id = ? AND sku = ? ORDER BY id DESC LIMIT ?",
            (store_id, sku, MAX_ENTRIES),
        )
        entries = [
            {"id": int(r[0]), "store_id": r[1], "store_seq": int(r[3]), "delta": int(r[4]), "reason": r[5], "ref": r[6],
             "applied_at": float(r[7])}
            for r in reversed(rows)
        ]  # fmt: skip
        detail = {"store_id": store_id, "sku": sku, "on_hand": on_hand, "entries": entries}
        _open_or_refresh(db, STOCK, subject, store_id, on_hand, detail, now)
    return []


def _accepted_at_or_below(db: Central, kind: str, subject: str, level: int) -> bool:
    """An operator accepted this subject at `level` or lower: no new conflict until it gets worse."""
    accepted = db.scalar(
        "SELECT level FROM conflicts WHERE kind = ? AND subject = ? AND status = 'resolved' AND action = 'accept'"
        " ORDER BY resolved_at DESC LIMIT 1",
        (kind, subject),
    )
    return accepted is not None and level >= int(accepted)


def _open_or_refresh(db: Central, kind: str, subject: str, store_id: str, level: int, detail: dict[str, Any],
                     now: float) -> None:  # fmt: skip
    # One statement, so two aggregators detecting the same subject at once still make one conflict.
    db.execute(
        "INSERT INTO conflicts(kind, subject, store_id, level, detail, status, detected_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, 'open', ?, ?)"
        " ON CONFLICT (kind, subject) WHERE status = 'open' DO UPDATE SET level = excluded.level,"
        " detail = excluded.detail, store_id = excluded.store_id, updated_at = excluded.updated_at",
        (kind, subject, store_id, level, json.dumps(detail, ensure_ascii=False), now, now),
    )


def _points_rows(db: Central, member_id: str) -> list[dict[str, Any]]:
    """The member's newest spending entries, each with the feed position its store had read when it
    made the entry (``cursor``, from its sale) and the first points.balance change that carried it
    to the stores (``visible_seq``; None while no balance including it has been published)."""
    rows = db.all(
        "SELECT l.id, l.store_id, l.store_seq, l.delta, l.kind, l.ref, l.created_at, s.feed_cursor,"
        " (SELECT min(c.seq) FROM changes c WHERE c.kind = 'points.balance' AND c.key = l.member_id"
        "  AND c.created_at >= l.created_at)"
        " FROM points_ledger l LEFT JOIN sales s ON s.store_id = l.store_id AND s.stream = l.stream AND s.receipt_no = l.ref"
        " WHERE l.member_id = ? AND l.delta < 0 ORDER BY l.id DESC LIMIT ?",
        (member_id, MAX_ENTRIES),
    )
    return [
        {"id": int(r[0]), "store_id": r[1], "store_seq": int(r[2]), "delta": int(r[3]), "kind": r[4], "ref": r[5],
         "applied_at": float(r[6]), "cursor": None if r[7] is None else int(r[7]),
         "visible_seq": None if r[8] is None else int(r[8])}
        for r in rows
    ]  # fmt: skip


def concurrent_spending(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spending entries of different stores made without knowledge of each other. Pure.

    Store X's entry could not know entry F when the change that carried F to the stores lies beyond
    the feed position X had read (or does not exist yet). Entries with no such position (HQ's own)
    are never a side, except a channel's points hold (kind ``hold``): it could not know a store's entry
    that reached HQ after it. Falls back to the newest entry when no pair is blind to each other.
    """

    def unseen(entry: dict[str, Any], by: dict[str, Any]) -> bool:
        if by["cursor"] is None:  # HQ's own; a web points hold (issue 18) did not see what reached HQ after it
            return by.get("kind") == "hold" and entry["id"] > by["id"]
        return entry["visible_seq"] is None or entry["visible_seq"] > by["cursor"]

    chosen: dict[int, dict[str, Any]] = {}
    for a in entries:
        for b in entries:
            if a["store_id"] != b["store_id"] and unseen(a, b) and unseen(b, a):
                chosen[a["id"]] = a
    if not chosen and entries:
        newest = max(entries, key=lambda e: e["id"])
        chosen[newest["id"]] = newest
    return sorted(chosen.values(), key=lambda e: e["id"])


# ---------------------------------------------------------------------------- queries


_COLUMNS = ("id, kind, subject, store_id, level, detail, status, detected_at, action, note, resolved_by, resolved_at,"
            " resolution")  # fmt: skip


def _conflict(row: tuple[Any, ...]) -> Conflict:
    return Conflict(
        id=int(row[0]), kind=row[1], subject=row[2], store_id=row[3], level=int(row[4]), detail=json.loads(row[5]),
        status=row[6], detected_at=float(row[7]), action=row[8], note=row[9], resolved_by=row[10],
        resolved_at=None if row[11] is None else float(row[11]),
        resolution=None if row[12] is None else json.loads(row[12]),
    )  # fmt: skip


def list_open(db: Central) -> list[Conflict]:
    """Open conflicts, newest first."""
    return [_conflict(r) for r in db.all(f"SELECT {_COLUMNS} FROM conflicts WHERE status = 'open' ORDER BY id DESC")]


def list_all(db: Central, limit: int = 200) -> list[Conflict]:
    return [_conflict(r) for r in db.all(f"SELECT {_COLUMNS} FROM conflicts ORDER BY id DESC LIMIT ?", (limit,))]


def get(db: Central, conflict_id: int | str) -> Conflict | None:
    row = db.one(f"SELECT {_COLUMNS} FROM conflicts WHERE id = ?", (_id(conflict_id),))
    return _conflict(row) if row else None


def open_counts_by_store(db: Central) -> dict[str, int]:
    return {str(s): int(n) for s, n in db.all("SELECT store_id, count(*) FROM conflicts WHERE status = 'open' GROUP BY store_id")}


def _id(conflict_id: int | str) -> int:
    try:
        return int(conflict_id)
    except (TypeError, ValueError):
        raise UserError(f"conflict {conflict_id!r}: expected a number") from None


# ---------------------------------------------------------------------------- resolution


def resolve(db: Central, conflict_id: int | str, action: str, note: str | None = None,
            actor: str = "operator") -> Conflict:  # fmt: skip
    """Resolve an open conflict by an explicit entry (or an acceptance); the result goes down the feed."""
    now = time.time()
    number = _id(conflict_id)
    with db.transaction():
        row = db.one(f"SELECT {_COLUMNS} FROM conflicts WHERE id = ?" + db.lock_suffix(), (number,))
        if row is None:
            raise UserError(f"conflict {number}: not found")
        conflict = _conflict(row)
        if conflict.status != "open":
            raise UserError(f"conflict {number}: already {conflict.status} ({conflict.action})")
        if action not in ACTIONS[conflict.kind]:
            raise UserError(f"conflict {number} ({conflict.kind}): --action must be one of {', '.join(ACTIONS[conflict.kind])}")
        ref = f"conflict:{number}"
        changes: list[ChangeTuple] = []
        if conflict.kind == POINTS:
            level = int(db.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (conflict.subject,), 0))
            resolution: dict[str, Any] = {"balance_before": level}
            if action == "write-off":
                if level >= 0:
                    raise UserError(f"conflict {number}: balance is {level:,} now, nothing to write off (use --action accept)")
                db.execute(*points_entry(member_id=conflict.subject, delta=-level, kind="adjustment", ref=ref,
                                         store_id=HQ_STORE, stream=HQ_STREAM, store_seq=0, at=now))  # fmt: skip
                resolution["entry"] = {"ledger": "points", "delta": -level, "kind": "adjustment", "ref": ref}
                changes.append(points_balance_change(db, conflict.subject))
        elif conflict.kind == TRANSFER:
            level = conflict.level
            resolution = {"missing_units": int(conflict.detail.get("missing_units", 0))}
            if action == "return-to-sender":
                sender, skus = str(conflict.detail["from_store"]), dict(conflict.detail.get("skus") or {})
                if not skus:
                    raise UserError(f"conflict {number}: no missing units to return (use --action accept)")
                resolution["entries"] = [_stock_fix(db, sender, sku, int(qty), "transfer-return", ref, now, changes)
                                         for sku, qty in sorted(skus.items())]  # fmt: skip
        elif conflict.kind == RESERVATION:  # the customer was told; the units' loss is the transfer's conflict
            level = conflict.level
            resolution = {"ordered": conflict.detail.get("ordered"), "arrived": conflict.detail.get("arrived")}
        else:
            store_id, _, sku = conflict.subject.partition("/")
            level = int(db.scalar("SELECT on_hand FROM stock_levels WHERE store_id = ? AND sku = ?", (store_id, sku), 0))
            resolution = {"on_hand_before": level}
            if action == "adjust":
                if level >= 0:
                    raise UserError(f"conflict {number}: on-hand is {level:,} now, nothing to adjust (use --action accept)")
                resolution["entry"] = _stock_fix(db, store_id, sku, -level, "adjustment", ref, now, changes)
        db.execute(
            "UPDATE conflicts SET status = 'resolved', action = ?, note = ?, resolved_by = ?, resolved_at = ?,"
            " resolution = ?, level = ?, updated_at = ? WHERE id = ?",
            (action, note, actor, now, json.dumps(resolution, ensure_ascii=False), level, now, number),
        )
        audit(db, actor, "conflict.resolved", conflict.subject,
              {"conflict": number, "kind": conflict.kind, "action": action, "note": note, **resolution})  # fmt: skip
        seqs = record_changes(db, changes, now)
        for seq, (kind, _key, _store, data) in zip(seqs, changes):
            if kind == "stock.level":
                db.execute("UPDATE stock_levels SET version = ? WHERE store_id = ? AND sku = ?",
                           (seq, data["store_id"], data["sku"]))  # fmt: skip
            elif kind == "stock.correction":  # which change carries it: a bootstrap's opening balance needs that
                db.execute("UPDATE stock_ledger SET store_seq = ? WHERE id = ?", (seq, data["entry_id"]))
    resolved = get(db, number)
    assert resolved is not None
    return resolved


def _stock_fix(db: Central, store_id: str, sku: str, delta: int, reason: str, ref: str, now: float,
               changes: list[ChangeTuple]) -> dict[str, Any]:  # fmt: skip
    """An HQ entry in a store's stock ledger, its new level for every store, and the entry for that store."""
    sql, params = stock_entry(store_id=store_id, stream=HQ_STREAM, sku=sku, delta=delta, reason=reason, ref=ref,
                              store_seq=0, at=now)  # fmt: skip
    entry_id = int(db.scalar(f"{sql} RETURNING id", params))
    on_hand = int(db.scalar("SELECT on_hand FROM stock_levels WHERE store_id = ? AND sku = ?", (store_id, sku), 0))
    subject = f"{store_id}/{sku}"
    changes.append(("stock.level", subject, None,
                    {"store_id": store_id, "sku": sku, "on_hand": on_hand, "as_of": now, "version": 0}))  # fmt: skip
    # The store's own on-hand is its ledger: it gets the entry itself (only that store applies it).
    changes.append(("stock.correction", f"{subject}/{entry_id}", store_id,
                    {"store_id": store_id, "sku": sku, "delta": delta, "reason": f"hq-{reason}", "ref": ref,
                     "entry_id": entry_id}))  # fmt: skip
    return {"ledger": "stock", "store_id": store_id, "sku": sku, "delta": delta, "reason": reason, "ref": ref}


def points_balance_change(db: Central, member_id: str) -> ChangeTuple:
    """A points.balance feed entry in core's shape: the balance and, per store, the last event it includes."""
    balance = int(db.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (member_id,), 0))
    through = {
        str(s): int(n)
        for s, n in db.all(
            "SELECT store_id, last_applied_seq FROM stores WHERE store_id IN"
            " (SELECT DISTINCT store_id FROM points_ledger WHERE member_id = ?)",
            (member_id,),
        )
    }
    return ("points.balance", member_id, None, {"member_id": member_id, "balance": balance, "through": through})
