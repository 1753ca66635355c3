"""The store's side of the sync protocol as a pure state machine: no paho, no SQLite, no clock.

``edge/sync.py`` turns paho callbacks, HQ's messages and its own ticks into the inputs below, each
stamped with a monotonic ``now``, and carries out the commands :meth:`LinkMachine.handle` returns.
What the machine needs to know from the database arrives with the input (the outbox's newest seq);
what the adapter reads to fill a message in (cursor, backlog, clock) stays with the adapter. The same
inputs therefore always give the same commands, so every transition is testable without a broker.

:class:`Reconnects` is kept apart because paho's network thread drives it: the Will and the wait
before the next attempt must be set inside paho's callbacks, before paho reconnects.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from tenpo.edge.clock_skew import SkewEstimate
from tenpo.edge.config import SyncSettings
from tenpo.shared.protocol import Ack, ChangePage, Event, EventBatch, HqState, SnapshotChunk, encode

MAX_BATCH_BYTES: Final = 512 * 1024  # stays well under HQ's 1 MiB upstream limit
PULL_RETRY_S: Final = 2.0  # a gap in the change feed asks again at most this often
SNAPSHOT_RETRY_S: Final = 5.0  # a snapshot request that got no chunk is repeated after this long
STALE_GAPS_ALERT: Final = 3  # gap acks below our acknowledged mark in a row before we call HQ behind
ACK_TIMEOUT_CAP_S: Final = 60.0  # the ack timeout doubles per silent timeout up to this (a draining HQ is slow, not gone)
NEVER: Final = float("-inf")


@dataclass(slots=True)
class LinkCounters:
    batches_sent: int = 0
    events_sent: int = 0
    acks: int = 0
    resends: int = 0
    pages_applied: int = 0
    changes_applied: int = 0
    bad_messages: int = 0
    snapshot_rows: int = 0


# ---------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Connected:
    now: float
    bdseq: int  # session number the broker holds our Will under, so the birth must carry it


@dataclass(frozen=True, slots=True)
class Disconnected:
    now: float
    reason: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Housekeeping: ack timeout, pumping the outbox, periodic pull, snapshot retry, status."""

    now: float
    written: int  # newest outbox seq (other processes commit events too)


@dataclass(frozen=True, slots=True)
class AckReceived:
    now: float
    ack: Ack
    written: int  # newest outbox seq: an ack beyond it is not believed
    received_at: float | None = None  # our wall clock when the ack arrived, to compare with the ack's ``at``


@dataclass(frozen=True, slots=True)
class EventsSent:
    """Answer to :class:`SendEvents`: the last seq actually published (``count`` 0: nothing was pending)."""

    now: float
    upto: int
    count: int


@dataclass(frozen=True, slots=True)
class HqAnnounced:
    now: float
    state: HqState


@dataclass(frozen=True, slots=True)
class PageReceived:
    now: float
    page: ChangePage


@dataclass(frozen=True, slots=True)
class PageApplied:
    """Answer to :class:`ApplyPage`."""

    now: float
    gap: bool  # the page started after our cursor
    behind: bool  # HQ holds more than we do now


@dataclass(frozen=True, slots=True)
class ChunkReceived:
    now: float
    chunk: SnapshotChunk


@dataclass(frozen=True, slots=True)
class ChunkApplied:
    """Answer to :class:`ApplyChunk`."""

    now: float
    done: bool  # the replica is bootstrapped
    stale: bool = False  # skipped (a duplicate or another snapshot's): the request that is live asks next


@dataclass(frozen=True, slots=True)
class Stopping:
    now: float


Input = (
    Connected | Disconnected | Tick | AckReceived | EventsSent | HqAnnounced | PageReceived | PageApplied
    | ChunkReceived | ChunkApplied | Stopping
)  # fmt: skip


# ---------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class RecordLink:
    """Write whether the link is up where `tenpo edge status` reads it."""

    connected: bool


@dataclass(frozen=True, slots=True)
class RecordClockSkew:
    """Write the clock-skew estimate (seconds HQ's clock is ahead of ours) where status and doctor read it."""

    skew_s: float
    samples: int


@dataclass(frozen=True, slots=True)
class SendBirth:
    bdseq: int
    acked: int


@dataclass(frozen=True, slots=True)
class SendDeath:
    bdseq: int


@dataclass(frozen=True, slots=True)
class SendStatus:
    acked: int


@dataclass(frozen=True, slots=True)
class SendEvents:
    """Publish up to ``limit`` outbox events after ``after``, then report back with :class:`EventsSent`."""

    after: int
    limit: int


@dataclass(frozen=True, slots=True)
class Resend:
    """The window was rewound: events from ``from_seq`` go out again (HQ skips what it has)."""

    from_seq: int
    why: str


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """Forget events up to ``hwm`` (HQ holds them) in one transaction; clear the HQ-behind alert if asked."""

    hwm: int
    clear_alert: bool


@dataclass(frozen=True, slots=True)
class AlertHqBehind:
    """HQ keeps reporting a mark below what it had acknowledged: events it lost are no longer here."""

    hq_hwm: int
    acked: int


@dataclass(frozen=True, slots=True)
class SendPull:
    """Ask for the change feed after the replica's cursor."""


@dataclass(frozen=True, slots=True)
class RequestSnapshot:
    """Ask for the next snapshot chunk from where the replica's bootstrap stands."""


@dataclass(frozen=True, slots=True)
class ApplyPage:
    page: ChangePage


@dataclass(frozen=True, slots=True)
class ApplyChunk:
    chunk: SnapshotChunk


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """The replica holds everything HQ has announced."""


Command = (
    RecordLink | RecordClockSkew | SendBirth | SendDeath | SendStatus | SendEvents | Resend | Acknowledge | AlertHqBehind
    | SendPull | RequestSnapshot | ApplyPage | ApplyChunk | CaughtUp
)  # fmt: skip


# ---------------------------------------------------------------------------- the machine


class LinkMachine:
    """One store's link to HQ. Feed every :data:`Input` to :meth:`handle`; carry out the commands in order."""

    def __init__(
        self, settings: SyncSettings, stream: str, acked: int, bootstrapped: bool, now: float,
        rng: random.Random | None = None,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.rng = rng or random.Random()
        self.stream = stream
        self.counters = LinkCounters()
        self.connected = False
        self.bdseq: int | None = None  # of the current connection
        self.acked = acked  # HQ holds every event up to here (persisted by the adapter)
        self.sent_upto = acked  # highest seq published on this connection
        self.written = acked  # newest outbox seq we know of
        self.bootstrapped = bootstrapped
        self.stale_gaps = 0
        self.last_progress = now
        self.silent_timeouts = 0  # ack timeouts in a row without progress: each one doubles the next wait
        self.ack_wait = settings.ack_timeout_s
        self.last_pull = NEVER
        self.last_snapshot_request = NEVER
        self.last_status = NEVER
        self.skew = SkewEstimate()

    @property
    def window(self) -> int:
        return self.settings.batch_size * self.settings.max_inflight_batches

    def handle(self, event: Input) -> list[Command]:
        match event:
            case Connected():
                return self._connected(event)
            case Disconnected():
                self.connected = False
                return [RecordLink(False)]
            case Tick():
                return self._tick(event)
            case AckReceived():
                return self._ack(event)
            case EventsSent():
                return self._events_sent(event)
            case HqAnnounced():
                return self._hq_announced(event)
            case PageReceived():
                return [ApplyPage(event.page)] if self.bootstrapped else []  # else the snapshot covers it
            case PageApplied():
                return self._page_applied(event)
            case ChunkReceived():
                return [] if self.bootstrapped else [ApplyChunk(event.chunk)]
            case ChunkApplied():
                return self._chunk_applied(event)
            case Stopping():
                # Sparkplug's rule: an intentional disconnect says so, so HQ need not wait for the Will.
                was_connected, self.connected = self.connected, False
                return [SendDeath(self.bdseq)] if was_connected and self.bdseq is not None else []
        raise TypeError(f"not a link input: {event!r}")

    # ------------------------------------------------------------------ connection

    def _connected(self, event: Connected) -> list[Command]:
        self.connected = True
        self.bdseq = event.bdseq
        self.sent_upto = self.acked  # whatever was in flight may be lost: resend, HQ skips duplicates
        self.last_progress = event.now
        return [RecordLink(True), SendBirth(event.bdseq, self.acked), *self._ask_downstream(event.now)]

    def _hq_announced(self, event: HqAnnounced) -> list[Command]:
        """An aggregator (re)started: what we sent or asked meanwhile may have gone nowhere."""
        if not event.state.online or not self.connected:
            return []
        self.sent_upto = self.acked
        return self._ask_downstream(event.now)

    def _ask_downstream(self, now: float) -> list[Command]:
        return self._pull(now, force=True) if self.bootstrapped else self._request_snapshot(now)

    # ------------------------------------------------------------------ upstream

    def _tick(self, event: Tick) -> list[Command]:
        now = event.now
        self.written = max(self.written, event.written)
        if not self.connected:
            return []
        commands: list[Command] = []
        silent = now - self.last_progress
        if self.sent_upto > self.acked and silent > self.ack_wait:
            commands.append(self._rewind(f"no ack for {silent:.1f}s"))
            self.last_progress = now
            self._back_off()
        commands += self._pump()
        if self.bootstrapped:
            if now - self.last_pull > self.settings.pull_interval_s:
                commands += self._pull(now, force=True)
        elif now - self.last_snapshot_request > SNAPSHOT_RETRY_S:
            commands += self._request_snapshot(now)
        if now - self.last_status > self.settings.status_interval_s:
            self.last_status = now
            commands.append(SendStatus(self.acked))
        return commands

    def _pump(self) -> list[Command]:
        """The next batch, while the in-flight window has room and the outbox has more."""
        if self.connected and self.sent_upto - self.acked < self.window and self.sent_upto < self.written:
            return [SendEvents(self.sent_upto, self.settings.batch_size)]
        return []

    def _events_sent(self, event: EventsSent) -> list[Command]:
        if event.count == 0 or event.upto <= self.sent_upto:
            self.written = self.sent_upto  # nothing after it in the outbox: wait for the next tick
            return []
        if self.sent_upto == self.acked:
            self.last_progress = event.now  # the ack timeout runs from the first unacknowledged batch
        self.sent_upto = event.upto
        self.written = max(self.written, event.upto)
        self.counters.batches_sent += 1
        self.counters.events_sent += event.count
        return self._pump()

    def ack_timeout(self, silent_timeouts: int) -> float:
        """The wait after ``silent_timeouts`` timeouts in a row: doubled each time up to the cap, never below the setting."""
        base = self.settings.ack_timeout_s
        return min(max(ACK_TIMEOUT_CAP_S, base), base * 2.0 ** min(silent_timeouts, 32))

    def _back_off(self) -> None:
        # An HQ draining hundreds of stores' backlogs answers late, not never: resending the whole window every
        # few seconds only deepens its queue. The jitter (the upper quarter below the ceiling) keeps stores that
        # timed out together from resending together again.
        self.silent_timeouts += 1
        ceiling = self.ack_timeout(self.silent_timeouts)
        self.ack_wait = max(self.settings.ack_timeout_s, self.rng.uniform(0.75 * ceiling, ceiling))

    def _heard_from_hq(self, now: float) -> None:
        self.last_progress = now
        self.silent_timeouts = 0
        self.ack_wait = self.settings.ack_timeout_s

    def _rewind(self, why: str) -> Resend:
        self.counters.resends += 1
        self.sent_upto = self.acked
        return Resend(self.acked + 1, why)

    def _ack(self, event: AckReceived) -> list[Command]:
        ack = event.ack
        if ack.stream != self.stream:
            return []  # another life of this database, or someone else's
        self.counters.acks += 1
        self.written = max(self.written, event.written)
        commands: list[Command] = []
        skew = self.skew.observe(ack.at, event.received_at, event.now)
        if skew is not None:
            commands.append(RecordClockSkew(skew, len(self.skew.samples)))
        mark = min(ack.hwm, self.written)  # never believe an ack beyond what we wrote
        if mark > self.acked:
            commands.append(Acknowledge(mark, clear_alert=self.stale_gaps >= STALE_GAPS_ALERT))
            self.acked = mark
            self.stale_gaps = 0
            self._heard_from_hq(event.now)
        if ack.gap and ack.hwm < self.acked:
            # Either a late ack from another aggregator (harmless: ignore it), or HQ really lost events it had
            # acknowledged (its database restored from a backup): they are gone here, so say so if it persists.
            self.stale_gaps += 1
            if self.stale_gaps >= STALE_GAPS_ALERT:
                commands.append(AlertHqBehind(ack.hwm, self.acked))
            return commands
        if ack.gap:
            commands.append(self._rewind(f"HQ is missing events after {ack.hwm}"))
            self._heard_from_hq(event.now)  # HQ answers: the resend just made gets a fresh, short timeout
        self.sent_upto = max(self.sent_upto, self.acked)
        return commands + self._pump()

    # ------------------------------------------------------------------ downstream

    def _pull(self, now: float, force: bool) -> list[Command]:
        if not self.connected or (not force and now - self.last_pull < PULL_RETRY_S):
            return []
        self.last_pull = now
        return [SendPull()]

    def _request_snapshot(self, now: float) -> list[Command]:
        if not self.connected:
            return []
        self.last_snapshot_request = now
        return [RequestSnapshot()]

    def _page_applied(self, event: PageApplied) -> list[Command]:
        if event.gap:
            return self._pull(event.now, force=False)  # ask from our cursor, but not once per pushed page
        if event.behind:
            return self._pull(event.now, force=True)
        return [CaughtUp()]

    def _chunk_applied(self, event: ChunkApplied) -> list[Command]:
        if event.done:
            self.bootstrapped = True
            return self._pull(event.now, force=True)  # the feed resumes after the snapshot's start
        if event.stale:
            return []  # asking again here would start a second chain of requests, each chunk sent twice
        return self._request_snapshot(event.now)


# ---------------------------------------------------------------------------- batches


def batch_body(stream: str, events: list[Event], written: int, max_bytes: int = MAX_BATCH_BYTES) -> tuple[bytes, int]:
    """The encoded batch and how many of ``events`` it holds: halved until it fits (one event always goes).

    ``backlog`` is counted from the events actually in the batch, so HQ's view of the store stays right.
    """
    count = len(events)
    while True:
        body = encode(EventBatch(stream, events[:count], backlog=written - events[count - 1].seq))
        if len(body) <= max_bytes or count == 1:
            return body, count
        count //= 2


# ---------------------------------------------------------------------------- reconnecting


class Reconnects:
    """Session numbers (``bdseq``) and the wait before each reconnect attempt.

    The wait doubles per attempt up to ``cap_s`` and is drawn at random from the upper half of that,
    so a chain of stores that lost the same broker does not come back in lockstep. It starts over
    only after a connection that lasted ``stable_s``: a broker that accepts and drops at once (a
    reconnect storm) is not hammered at the shortest wait, as it would be if every CONNACK reset it.
    """

    def __init__(
        self, first_session: int, rng: random.Random, base_s: float = 1.0, cap_s: float = 30.0, stable_s: float = 30.0
    ) -> None:
        if not 0 < base_s <= cap_s:
            raise ValueError("need 0 < base_s <= cap_s")
        self.session = first_session  # of the current connection, or of the next one once lost
        self.rng = rng
        self.base_s = base_s
        self.cap_s = cap_s
        self.stable_s = stable_s
        self.attempt = 0
        self._connected_at: float | None = None

    def ceiling(self, attempt: int) -> float:
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt, 32))

    def connected(self, now: float) -> int:
        """The broker accepted us; returns the session number the birth must carry."""
        self._connected_at = now
        return self.session

    def lost(self, now: float) -> float:
        """A connection dropped; the next one is a new session. Returns the seconds to wait."""
        self.session += 1
        if self._connected_at is not None and now - self._connected_at >= self.stable_s:
            self.attempt = 0
        self._connected_at = None
        return self._next_wait()

    def failed(self, now: float) -> float:
        """An attempt did not get through; same session. Returns the seconds to wait."""
        return self._next_wait()

    def _next_wait(self) -> float:
        ceiling = self.ceiling(self.attempt)
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)
