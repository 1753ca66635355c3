"""When a delivery starts and ends at the dock door, decided from reads alone (pure; time is passed in).

A session opens on the first read that passes the RSSI threshold and closes once the door has been
quiet for ``quiet_s``. Two guards keep a pallet standing at the door from being inspected twice or
forever: a session is closed after ``max_session_s`` even if reads keep coming, and for ``rearm_s``
after a session closes, reads of the EPCs it already counted are ignored (they have not moved).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from tenpo.edge.inspection.matching import DOOR, INSIDE, Sighting, note_read

QUIET: Final = "quiet"
MAX_LENGTH: Final = "max_length"
STOPPED: Final = "stopped"


@dataclass(frozen=True, slots=True)
class SessionSettings:
    quiet_s: float = 3.0
    max_session_s: float = 600.0
    rearm_s: float = 60.0
    rssi_min_dbm: int | None = -75

    def __post_init__(self) -> None:
        for name in ("quiet_s", "max_session_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.rearm_s < 0:
            raise ValueError("rearm_s must not be negative")


@dataclass(frozen=True, slots=True)
class ClosedSession:
    opened_at: float
    closed_at: float  # when the session was decided closed (last read + quiet, or the cut-off)
    last_read_at: float
    sightings: dict[str, Sighting]
    reads: int
    reason: str  # QUIET, MAX_LENGTH or STOPPED


@dataclass(slots=True)
class _Open:
    opened_at: float
    last_read_at: float
    sightings: dict[str, Sighting] = field(default_factory=dict)
    reads: int = 0


class DockSessions:
    """Feed reads with :meth:`feed`; call :meth:`poll` regularly (and after reads) to get closed sessions."""

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self._open: _Open | None = None
        self._settled: dict[str, float] = {}  # EPC -> last seen, from the last closed session
        self.ignored_reads = 0

    @property
    def is_open(self) -> bool:
        return self._open is not None

    @property
    def current_reads(self) -> int:
        return self._open.reads if self._open else 0

    @property
    def current_tags(self) -> int:
        return len(self._open.sightings) if self._open else 0

    def feed(self, epc: str, rssi: int | None, side: str, ts: float) -> None:
        """One read; ``side`` DOOR or INSIDE; ``ts`` the read's time on the same clock as ``poll``."""
        settled = self._settled.get(epc)
        if settled is not None and ts - settled < self.settings.rearm_s:
            self._settled[epc] = ts
            self.ignored_reads += 1
            return
        session = self._open
        if session is None:
            threshold = self.settings.rssi_min_dbm
            if rssi is not None and threshold is not None and rssi < threshold:
                self.ignored_reads += 1  # a weak stray read does not start an inspection
                return
            session = self._open = _Open(ts, ts)
        note_read(session.sightings, epc, rssi, side, ts, self.settings.rssi_min_dbm)
        session.reads += 1
        if ts > session.last_read_at:
            session.last_read_at = ts

    def poll(self, now: float) -> ClosedSession | None:
        session = self._open
        if session is None:
            return None
        if now - session.last_read_at >= self.settings.quiet_s:
            return self._close(session.last_read_at + self.settings.quiet_s, QUIET)
        if now - session.opened_at >= self.settings.max_session_s:
            return self._close(now, MAX_LENGTH)
        return None

    def close_now(self, now: float) -> ClosedSession | None:
        """Close whatever is open (the service is stopping)."""
        return self._close(now, STOPPED) if self._open else None

    def _close(self, closed_at: float, reason: str) -> ClosedSession:
        session = self._open
        assert session is not None
        self._open = None
        self._settled = {epc: s.last_ts for epc, s in session.sightings.items()}
        return ClosedSession(session.opened_at, closed_at, session.last_read_at, session.sightings, session.reads, reason)


def side_for(antenna: int, inside_antennas: frozenset[int]) -> str:
    """Antennas a profile names as inside are INSIDE; every other antenna faces the door."""
    return INSIDE if antenna in inside_antennas else DOOR
