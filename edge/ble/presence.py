"""Presence engine: noisy RSSI sightings in, clean arrive/leave/zone/coupon events out.

Pure and clock-free: the caller passes every time in (``observe(t, ...)``, ``tick(t)``), so tests
run synthetic traces in microseconds and a recording replays exactly as it was heard.

Each (zone, subject) pair is a track. RSSI is smoothed with an exponential filter whose weight
depends on the time since the previous sample (adverts arrive irregularly, and BlueZ suppresses
repeats). A track enters when the smoothed RSSI reaches ``enter_rssi``; it leaves when the
smoothed RSSI has stayed below the lower ``leave_rssi`` for ``leave_after_s``, or when nothing has
been heard for ``silence_timeout_s``. The gap between the two thresholds (hysteresis) and the hold
time are what make a customer standing still at the edge of range one visit, not a flicker.

Subjects are resolved members and registered zone beacons only; Bluetooth addresses never get
here. A track is dropped once its subject has been silent for the timeout; what remains then is
the member id and the start time of their latest visit (for the first-visit coupon rule), pruned
after the rule's window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .registry import FirstVisitRule, Registry, Thresholds, ZoneDwellRule

_MIN_SAMPLE_GAP_S = 0.1  # two adverts in the same instant still both count a little


@dataclass(frozen=True, slots=True)
class Subject:
    kind: Literal["member", "beacon"]
    id: str  # member id, or the zone beacon's registry name


@dataclass(frozen=True, slots=True)
class MemberArrived:
    member_id: str
    t: float


@dataclass(frozen=True, slots=True)
class MemberLeft:
    member_id: str
    t: float  # when the member was last in range (not when the engine noticed)
    dwell_s: float


@dataclass(frozen=True, slots=True)
class ZoneEntered:
    zone: str
    subject: Subject
    t: float


@dataclass(frozen=True, slots=True)
class ZoneLeft:
    zone: str
    subject: Subject
    t: float
    dwell_s: float


@dataclass(frozen=True, slots=True)
class CouponTriggered:
    member_id: str
    rule: str
    t: float


PresenceEvent = MemberArrived | MemberLeft | ZoneEntered | ZoneLeft | CouponTriggered
LastVisit = Callable[[str], "float | None"]


class _Track:
    __slots__ = ("thresholds", "smoothed", "last_t", "present", "since", "below_since", "couponed")

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.smoothed = 0.0
        self.last_t = -math.inf
        self.present = False
        self.since = 0.0
        self.below_since: float | None = None
        self.couponed = False  # zone-dwell coupons fire once per stay

    def add(self, t: float, rssi: float) -> None:
        tau = self.thresholds.smoothing_s
        if self.last_t == -math.inf or tau <= 0:
            self.smoothed = rssi
        else:
            gap = max(t - self.last_t, _MIN_SAMPLE_GAP_S)
            self.smoothed += (1.0 - math.exp(-gap / tau)) * (rssi - self.smoothed)
        self.last_t = max(self.last_t, t)


_Key = tuple["str | None", Subject]  # (zone or None for the whole store, subject)


class PresenceEngine:
    """Feed sightings and clock ticks; read events from the return values.

    Args:
        registry: thresholds, zones and coupon rules.
        last_visit: ``member_id -> start time of their previous visit`` (unix s) or None if none
            known; asked once per arrival, before that arrival is recorded anywhere.
    """

    def __init__(self, registry: Registry, last_visit: LastVisit | None = None) -> None:
        self._registry = registry
        self._last_visit = last_visit or (lambda member_id: None)
        self._zone_thresholds = {zone.name: zone.thresholds for zone in registry.zones}
        self._first_visit_rules = [r for r in registry.coupon_rules if isinstance(r, FirstVisitRule)]
        self._dwell_rules = [r for r in registry.coupon_rules if isinstance(r, ZoneDwellRule)]
        self._memory_s = max((r.days * 86400 for r in self._first_visit_rules), default=0.0)
        self._tracks: dict[_Key, _Track] = {}
        self._visit_starts: dict[str, float] = {}

    # --- input ------------------------------------------------------------------------------

    def observe(self, t: float, subject: Subject, rssi: float, zone: str | None = None) -> list[PresenceEvent]:
        """One sighting of ``subject`` at ``rssi`` dBm, heard in ``zone`` (None: no zone).

        Members count for the whole store wherever they are heard; a zone beacon only for its zone.
        """
        events: list[PresenceEvent] = []
        if subject.kind == "member":
            self._update((None, subject), self._registry.presence, t, rssi, events)
        if zone is not None:
            thresholds = self._zone_thresholds.get(zone, self._registry.presence)
            self._update((zone, subject), thresholds, t, rssi, events)
        return events

    def tick(self, t: float) -> list[PresenceEvent]:
        """Advance the clock: silence timeouts, leave holds and dwell coupons that are due."""
        events: list[PresenceEvent] = []
        for key, track in list(self._tracks.items()):
            if key not in self._tracks:  # closed along with its member's store track
                continue
            if t - track.last_t >= track.thresholds.silence_timeout_s:
                self._close(key, track, track.last_t, events)
            elif (
                track.present
                and track.below_since is not None
                and t - track.below_since >= track.thresholds.leave_after_s
            ):
                self._close(key, track, track.below_since, events, forget=False)
            elif track.present:
                self._check_dwell(key, track, t, events)
        self._forget_old_visits(t)
        return events

    def close_all(self, t: float) -> list[PresenceEvent]:
        """End every visit now (agent shutting down, or the end of a replayed recording)."""
        events: list[PresenceEvent] = []
        for key, track in list(self._tracks.items()):
            if key in self._tracks:
                self._close(key, track, min(t, track.last_t), events)
        self._tracks.clear()
        return events

    # --- state for a status screen ----------------------------------------------------------

    def present_members(self) -> dict[str, float]:
        """Members in the store now, with the time each arrived."""
        return {
            subject.id: track.since
            for (zone, subject), track in self._tracks.items()
            if zone is None and track.present
        }

    def zone_occupants(self, zone: str) -> dict[Subject, float]:
        return {s: tr.since for (z, s), tr in self._tracks.items() if z == zone and tr.present}

    # --- internals --------------------------------------------------------------------------

    def _update(
        self, key: _Key, thresholds: Thresholds, t: float, rssi: float, events: list[PresenceEvent]
    ) -> None:
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track(thresholds)
        track.add(t, rssi)
        if not track.present:
            if track.smoothed >= thresholds.enter_rssi:
                track.present, track.since, track.below_since = True, t, None
                self._opened(key, t, events)
            return
        if track.smoothed >= thresholds.leave_rssi:
            track.below_since = None
        elif track.below_since is None:
            track.below_since = t
        elif t - track.below_since >= thresholds.leave_after_s:
            self._close(key, track, track.below_since, events, forget=False)
            return
        self._check_dwell(key, track, t, events)

    def _opened(self, key: _Key, t: float, events: list[PresenceEvent]) -> None:
        zone, subject = key
        if zone is not None:
            events.append(ZoneEntered(zone, subject, t))
            return
        member_id = subject.id
        events.append(MemberArrived(member_id, t))
        previous = [v for v in (self._visit_starts.get(member_id), self._last_visit(member_id)) if v is not None]
        last = max(previous) if previous else None
        for rule in self._first_visit_rules:
            if last is None or t - last >= rule.days * 86400:
                events.append(CouponTriggered(member_id, rule.name, t))
        if self._memory_s > 0:
            self._visit_starts[member_id] = t

    def _check_dwell(self, key: _Key, track: _Track, t: float, events: list[PresenceEvent]) -> None:
        zone, subject = key
        if zone is None or subject.kind != "member" or track.couponed:
            return
        for rule in self._dwell_rules:
            if rule.zone == zone and t - track.since >= rule.seconds:
                track.couponed = True
                events.append(CouponTriggered(subject.id, rule.name, track.since + rule.seconds))

    def _close(
        self, key: _Key, track: _Track, left_t: float, events: list[PresenceEvent], *, forget: bool = True
    ) -> None:
        """End a stay. ``forget=False`` (left by signal, still faintly heard) keeps the smoothed
        value, so one strong outlier right after leaving cannot start a new visit."""
        zone, subject = key
        if forget:
            del self._tracks[key]
        if zone is None:
            # The member is gone from the store, so from every zone too: close those first.
            for other in [k for k in self._tracks if k[1] == subject and k[0] is not None]:
                other_track = self._tracks[other]
                if forget or other_track.present:
                    self._close(other, other_track, min(left_t, other_track.last_t), events, forget=forget)
        if not track.present:
            return
        was_since = track.since
        track.present, track.below_since, track.couponed = False, None, False
        dwell = round(max(0.0, left_t - was_since), 3)
        if zone is None:
            events.append(MemberLeft(subject.id, left_t, dwell))
        else:
            events.append(ZoneLeft(zone, subject, left_t, dwell))

    def _forget_old_visits(self, t: float) -> None:
        if self._visit_starts and self._memory_s > 0:
            stale = [m for m, start in self._visit_starts.items() if t - start >= self._memory_s]
            for member_id in stale:
                del self._visit_starts[member_id]
