"""Presence events into the store database: rows and the outbox events reporting them, one transaction.

Events sent to HQ: visit.arrived, visit.left, zone.entered, zone.left and coupon.triggered, whose
payloads are defined in tenpo.shared.events (times are unix seconds, ``store`` is this store's id).

A visit's arrival and departure come from one presence track, which lives in one engine; the
writer keys open visits and zone stays by (session, subject), where the session is the live
scanner or one replay, so a replay of a member who is also in the store does not cross wires.
Only the writer thread touches these maps.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable

from tenpo.edge.outbox import append
from tenpo.shared import events as catalogue  # its ZoneEntered... are the payloads; .presence's the engine's

from .presence import CouponTriggered, MemberArrived, MemberLeft, PresenceEvent, ZoneEntered, ZoneLeft


def _new_id() -> str:
    return uuid.uuid4().hex


class PresenceWriter:
    """Writes presence events; remembers which visit and zone stay is open for each subject."""

    def __init__(self, store_id: str) -> None:
        self.store_id = store_id
        self._visits: dict[tuple[str, str], tuple[str, float]] = {}  # (session, member) -> (visit_id, arrived_at)
        self._stays: dict[tuple[str, str, str, str], tuple[str, float]] = {}  # (session, zone, kind, id) -> ...
        self.last_arrival: dict[str, float] = {}  # member -> start of their latest visit (coupon rules)
        self.written = 0

    def load(self, conn: sqlite3.Connection, since: float) -> None:
        """Remember recent visit starts (for "first visit in N days") from the table."""
        rows = conn.execute(
            "SELECT member_id, max(arrived_at) FROM ble_visits WHERE arrived_at >= ? GROUP BY member_id", (since,)
        )
        for member_id, arrived_at in rows:
            self.last_arrival[member_id] = max(arrived_at, self.last_arrival.get(member_id, arrived_at))

    def close_interrupted(self, conn: sqlite3.Connection, now: float) -> int:
        """Visits left open by an agent that died: closed now, flagged, and reported as such."""
        rows = conn.execute(
            "SELECT visit_id, member_id, arrived_at FROM ble_visits WHERE left_at IS NULL ORDER BY arrived_at"
        ).fetchall()
        for visit_id, member_id, arrived_at in rows:
            left_at = max(now, arrived_at)
            self._close_visit(conn, visit_id, member_id, arrived_at, left_at, left_at - arrived_at, interrupted=True)
        conn.execute("UPDATE ble_zone_stays SET left_at = entered_at, dwell_s = 0 WHERE left_at IS NULL")
        return len(rows)

    def write(self, conn: sqlite3.Connection, session: str, events: Iterable[PresenceEvent], source: str = "scan") -> int:
        """Apply ``events`` inside the caller's transaction; returns how many were written."""
        count = 0
        for event in events:
            if isinstance(event, MemberArrived):
                self._arrived(conn, session, event, source)
            elif isinstance(event, MemberLeft):
                opened = self._visits.pop((session, event.member_id), None)
                if opened is None:
                    continue  # the arrival was before an agent restart: already closed as interrupted
                visit_id, arrived_at = opened
                self._close_visit(conn, visit_id, event.member_id, arrived_at, event.t, event.dwell_s)
            elif isinstance(event, ZoneEntered):
                self._zone_entered(conn, session, event)
            elif isinstance(event, ZoneLeft):
                self._zone_left(conn, session, event)
            elif isinstance(event, CouponTriggered):
                self._coupon(conn, session, event)
            count += 1
        self.written += count
        return count

    # --- per event ------------------------------------------------------------------------------

    def _arrived(self, conn: sqlite3.Connection, session: str, event: MemberArrived, source: str) -> None:
        visit_id = _new_id()
        self._visits[(session, event.member_id)] = (visit_id, event.t)
        self.last_arrival[event.member_id] = max(event.t, self.last_arrival.get(event.member_id, event.t))
        conn.execute(
            "INSERT INTO ble_visits(visit_id, member_id, arrived_at, source) VALUES (?, ?, ?, ?)",
            (visit_id, event.member_id, event.t, source),
        )
        append(conn, catalogue.VisitArrived(visit_id=visit_id, member_id=event.member_id, arrived_at=event.t,
                                            store=self.store_id))  # fmt: skip

    def _close_visit(
        self, conn: sqlite3.Connection, visit_id: str, member_id: str, arrived_at: float, left_at: float,
        dwell_s: float, *, interrupted: bool = False,
    ) -> None:  # fmt: skip
        dwell_s = round(max(0.0, dwell_s), 3)
        conn.execute(
            "UPDATE ble_visits SET left_at = ?, dwell_s = ?, interrupted = ? WHERE visit_id = ?",
            (left_at, dwell_s, int(interrupted), visit_id),
        )
        append(conn, catalogue.VisitLeft(visit_id=visit_id, member_id=member_id, arrived_at=arrived_at,
                                         left_at=left_at, dwell_s=dwell_s, interrupted=interrupted,
                                         store=self.store_id))  # fmt: skip

    def _zone_entered(self, conn: sqlite3.Connection, session: str, event: ZoneEntered) -> None:
        stay_id = _new_id()
        subject = event.subject
        member_id = subject.id if subject.kind == "member" else None
        self._stays[(session, event.zone, subject.kind, subject.id)] = (stay_id, event.t)
        conn.execute(
            "INSERT INTO ble_zone_stays(stay_id, zone, subject_kind, subject_id, member_id, entered_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (stay_id, event.zone, subject.kind, subject.id, member_id, event.t),
        )
        append(conn, catalogue.ZoneEntered(stay_id=stay_id, zone=event.zone, subject_kind=subject.kind,
                                           subject_id=subject.id, member_id=member_id, entered_at=event.t,
                                           store=self.store_id))  # fmt: skip

    def _zone_left(self, conn: sqlite3.Connection, session: str, event: ZoneLeft) -> None:
        subject = event.subject
        opened = self._stays.pop((session, event.zone, subject.kind, subject.id), None)
        if opened is None:
            return
        stay_id, entered_at = opened
        dwell_s = round(max(0.0, event.dwell_s), 3)
        conn.execute("UPDATE ble_zone_stays SET left_at = ?, dwell_s = ? WHERE stay_id = ?", (event.t, dwell_s, stay_id))
        append(conn, catalogue.ZoneLeft(stay_id=stay_id, zone=event.zone, subject_kind=subject.kind,
                                        subject_id=subject.id, member_id=subject.id if subject.kind == "member" else None,
                                        entered_at=entered_at, left_at=event.t, dwell_s=dwell_s,
                                        store=self.store_id))  # fmt: skip

    def _coupon(self, conn: sqlite3.Connection, session: str, event: CouponTriggered) -> None:
        coupon_id = _new_id()
        visit = self._visits.get((session, event.member_id))
        visit_id = visit[0] if visit else None
        conn.execute(
            "INSERT INTO ble_coupons(coupon_id, member_id, rule, visit_id, triggered_at) VALUES (?, ?, ?, ?, ?)",
            (coupon_id, event.member_id, event.rule, visit_id, event.t),
        )
        append(conn, catalogue.CouponTriggered(coupon_id=coupon_id, member_id=event.member_id, rule=event.rule,
                                               visit_id=visit_id, triggered_at=event.t,
                                               store=self.store_id))  # fmt: skip
