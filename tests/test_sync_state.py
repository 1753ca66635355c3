"""The sync link's state machine without a broker: every transition the broker tests reach, and the ones they cannot.

A small driver plays the adapter: it answers ``SendEvents`` the way an outbox holding seqs up to
``written`` would, so a test reads as the sequence of commands a store would carry out.
"""

from __future__ import annotations

import random
import statistics
import uuid
from collections import deque

import pytest

from tenpo.edge.config import SyncSettings
from tenpo.edge.sync_state import (
    ACK_TIMEOUT_CAP_S,
    PULL_RETRY_S,
    SNAPSHOT_RETRY_S,
    STALE_GAPS_ALERT,
    Acknowledge,
    AckReceived,
    AlertHqBehind,
    ApplyChunk,
    ApplyPage,
    CaughtUp,
    ChunkApplied,
    ChunkReceived,
    Command,
    Connected,
    Disconnected,
    EventsSent,
    HqAnnounced,
    Input,
    LinkMachine,
    PageApplied,
    PageReceived,
    Reconnects,
    RecordClockSkew,
    RecordLink,
    RequestSnapshot,
    Resend,
    SendBirth,
    SendDeath,
    SendEvents,
    SendPull,
    SendStatus,
    Stopping,
    Tick,
    batch_body,
)
from tenpo.shared.protocol import Ack, ChangePage, Event, EventBatch, HqState, SnapshotChunk, decode

STREAM = "stream-1"
SETTINGS = SyncSettings(batch_size=10, max_inflight_batches=2, ack_timeout_s=5.0, pull_interval_s=15.0,
                        status_interval_s=10.0)  # fmt: skip
WINDOW = SETTINGS.batch_size * SETTINGS.max_inflight_batches


class Store:
    """The adapter's part, reduced to an outbox counter: carries out commands and reports back."""

    def __init__(self, machine: LinkMachine, written: int = 0) -> None:
        self.machine = machine
        self.written = written

    def feed(self, event: Input) -> list[Command]:
        """One input; returns every command carried out because of it, in order."""
        done: list[Command] = []
        queue = deque(self.machine.handle(event))
        while queue:
            command = queue.popleft()
            done.append(command)
            if isinstance(command, SendEvents):
                upto = min(command.after + command.limit, self.written)
                queue.extend(self.machine.handle(EventsSent(event.now, upto, max(0, upto - command.after))))
        return done

    def tick(self, now: float) -> list[Command]:
        return self.feed(Tick(now, self.written))

    def ack(self, now: float, hwm: int, gap: bool = False, stream: str = STREAM) -> list[Command]:
        return self.feed(AckReceived(now, Ack(stream, hwm, gap), self.written))


def link(acked: int = 0, written: int | None = None, bootstrapped: bool = True, now: float = 0.0) -> Store:
    return Store(LinkMachine(SETTINGS, STREAM, acked, bootstrapped, now), acked if written is None else written)


def sends(commands: list[Command]) -> list[tuple[int, int]]:
    return [(c.after, c.limit) for c in commands if isinstance(c, SendEvents)]


def of(kind: type, commands: list[Command]) -> list[Command]:
    return [c for c in commands if isinstance(c, kind)]


def online(store: Store, now: float = 0.0, bdseq: int = 7) -> list[Command]:
    return store.feed(Connected(now, bdseq))


# ---------------------------------------------------------------------------- connecting


def test_a_connection_is_announced_with_a_birth_and_asks_for_the_feed() -> None:
    store = link(acked=4, written=9)
    commands = online(store, bdseq=3_000_001)
    assert commands == [RecordLink(True), SendBirth(3_000_001, 4), SendPull()]
    assert sends(store.tick(0.1)) == [(4, 10)], "events are sent from the acknowledged mark on the first tick"


def test_a_store_without_a_replica_asks_for_a_snapshot_instead() -> None:
    store = link(bootstrapped=False)
    assert online(store)[-1] == RequestSnapshot()


def test_nothing_is_sent_while_the_broker_is_away_and_the_backlog_drains_in_windows_after() -> None:
    store = link()
    online(store)
    store.feed(Disconnected(1.0, "broker gone"))
    store.written = 1000  # the outbox fills during the outage
    assert store.tick(2.0) == []
    online(store, now=3.0)
    first = sends(store.tick(3.1))
    assert first == [(0, 10), (10, 10)], "two batches in flight at most"
    sent = [s for s, _ in first]
    now = 3.2
    while store.machine.acked < 1000:
        sent += [s for s, _ in sends(store.ack(now, store.machine.sent_upto - SETTINGS.batch_size))]
        sent += [s for s, _ in sends(store.ack(now, store.machine.sent_upto))]
        now += 0.01
    assert sent == list(range(0, 1000, 10)), "every event sent once, in order, when HQ acks as it goes"
    assert store.machine.counters.events_sent == 1000
    assert of(Acknowledge, store.ack(now, 1000)) == [], "an ack repeated changes nothing"


def test_a_restarted_agent_resends_from_the_persisted_mark() -> None:
    store = link(acked=120, written=150)  # killed with 120 acknowledged and 30 unsent or unacked
    online(store)
    assert sends(store.tick(0.1)) == [(120, 10), (130, 10)]


def test_a_reconnect_resends_whatever_was_in_flight() -> None:
    store = link(written=15)
    online(store)
    store.tick(0.1)
    assert store.machine.sent_upto == 15
    store.feed(Disconnected(0.2, "keepalive timeout"))
    online(store, now=1.0, bdseq=8)
    assert sends(store.tick(1.1)) == [(0, 10), (10, 10)], "resent from the mark, HQ skips what it has"


def test_no_ack_for_the_timeout_resends_from_the_mark() -> None:
    store = link(written=5)
    online(store)
    store.tick(0.1)
    assert store.tick(0.1 + SETTINGS.ack_timeout_s) == [], "not before the timeout has passed"
    commands = store.tick(0.2 + SETTINGS.ack_timeout_s)
    assert commands[0] == Resend(1, f"no ack for {0.1 + SETTINGS.ack_timeout_s:.1f}s")
    assert sends(commands) == [(0, 10)]
    assert store.machine.counters.resends == 1


def timeouts_until(store: Store, start: float, end: float, step: float = 0.1) -> list[float]:
    """Tick from ``start`` to ``end`` with HQ silent; the times at which the window was resent."""
    times, now = [], start
    while now < end:
        if of(Resend, store.tick(now)):
            times.append(now)
        now = round(now + step, 3)
    return times


def test_a_silent_hq_gets_resends_ever_further_apart_up_to_the_cap() -> None:
    store = Store(LinkMachine(SETTINGS, STREAM, 0, True, 0.0, rng=random.Random(1)), written=5)
    online(store)
    store.tick(0.05)
    times = timeouts_until(store, 0.1, 600.0)
    gaps = [b - a for a, b in zip([0.05, *times], times, strict=False)]
    assert gaps[0] == pytest.approx(SETTINGS.ack_timeout_s, abs=0.2), "the first timeout is the configured one"
    assert gaps[1] > 1.4 * SETTINGS.ack_timeout_s and gaps[2] > 1.4 * gaps[1], "each silent timeout waits longer"
    assert max(gaps) <= ACK_TIMEOUT_CAP_S + 0.2 and max(gaps) > ACK_TIMEOUT_CAP_S / 2, "and stops growing at the cap"
    assert len(times) < 20, f"{len(times)} resends in 10 minutes of silence (a fixed 5 s timeout makes 120)"


def test_progress_brings_the_ack_timeout_back_to_the_setting() -> None:
    store = Store(LinkMachine(SETTINGS, STREAM, 0, True, 0.0, rng=random.Random(2)), written=50)
    online(store)
    store.tick(0.05)
    timeouts_until(store, 0.1, 120.0)
    assert store.machine.ack_wait > 4 * SETTINGS.ack_timeout_s
    store.ack(120.0, 10)  # HQ got through its queue to us
    assert store.machine.ack_wait == SETTINGS.ack_timeout_s
    first = timeouts_until(store, 120.1, 140.0)[0]
    assert first == pytest.approx(120.0 + SETTINGS.ack_timeout_s, abs=0.2)


def test_stores_timing_out_together_do_not_resend_together_again() -> None:
    stores = [Store(LinkMachine(SETTINGS, STREAM, 0, True, 0.0, rng=random.Random(seed)), written=5)
              for seed in range(20)]  # fmt: skip
    for store in stores:
        online(store)
        store.tick(0.05)
    fourth = [timeouts_until(store, 0.1, 200.0)[3] for store in stores]
    assert len({round(t) for t in fourth}) > 5, f"the fourth resends are spread out: {sorted(fourth)}"


def test_acks_carrying_hqs_time_give_the_clock_skew_least_spoilt_by_delay() -> None:
    store = link(written=50)
    online(store)
    store.tick(0.1)

    def ack(now: float, hwm: int, hq_at: float | None, received_at: float | None) -> list[Command]:
        return of(RecordClockSkew, store.feed(AckReceived(now, Ack(STREAM, hwm, at=hq_at), 50, received_at)))

    assert ack(0.2, 1, None, 1000.0) == [], "an older aggregator's ack has no time: nothing to measure"
    assert ack(0.3, 2, 1000.4, 1000.0) == [RecordClockSkew(pytest.approx(0.4), 1)], "HQ's clock 0.4 s ahead"
    assert ack(0.4, 3, 1001.0, 1001.3) == [], "a slow ack (0.7 s in the broker) does not make HQ look behind"
    assert ack(0.5, 4, 1002.0, 1001.1) == [RecordClockSkew(pytest.approx(0.9), 3)], "a faster one moves it"
    assert ack(70.0, 5, 1070.0, 1069.15) == [RecordClockSkew(pytest.approx(0.9), 4)], "re-stamped once a minute"
    assert ack(70.1, 6, float("inf"), 1069.2) == [], "a time no clock has is ignored"
    assert store.machine.acked == 6, "the acks still moved the mark"


def test_an_ack_moves_the_mark_and_frees_the_window() -> None:
    store = link(written=35)
    online(store)
    store.tick(0.1)
    commands = store.ack(0.2, 10)
    assert commands == [Acknowledge(10, clear_alert=False), SendEvents(20, 10)]
    assert store.machine.acked == 10


def test_an_ack_for_another_stream_is_ignored() -> None:
    store = link(written=5)
    online(store)
    store.tick(0.1)
    assert store.ack(0.2, 10**9, stream="someone-else") == []
    assert (store.machine.acked, store.machine.counters.acks) == (0, 0)


def test_a_gap_ack_resends_from_hqs_mark() -> None:
    store = link(written=30)
    online(store)
    store.tick(0.1)  # 1..20 in flight
    commands = store.ack(0.2, 4, gap=True)
    assert commands[:2] == [Acknowledge(4, clear_alert=False), Resend(5, "HQ is missing events after 4")]
    assert sends(commands) == [(4, 10), (14, 10)]


def test_an_aggregator_coming_online_gets_everything_again() -> None:
    store = link(written=15)
    online(store)
    store.tick(0.1)
    assert store.feed(HqAnnounced(0.2, HqState(False, "agg-1", 0.0))) == [], "its Will: nothing to do"
    commands = store.feed(HqAnnounced(0.3, HqState(True, "agg-2", 0.0)))
    assert commands == [SendPull()]
    assert sends(store.tick(0.4)) == [(0, 10), (10, 10)]


def test_an_aggregator_announced_while_we_are_offline_is_ignored() -> None:
    store = link(written=15)
    assert store.feed(HqAnnounced(0.3, HqState(True, "agg-2", 0.0))) == []


def test_a_clean_stop_publishes_the_death_of_this_connection() -> None:
    store = link()
    online(store, bdseq=42)
    assert store.feed(Stopping(1.0)) == [SendDeath(42)]
    offline = link()
    assert offline.feed(Stopping(1.0)) == [], "nothing to say without a connection: the Will covers it"


def test_status_and_pull_come_at_their_intervals() -> None:
    store = link(acked=3, written=3)
    online(store)
    assert store.tick(0.1) == [SendStatus(3)]
    assert store.tick(0.1 + SETTINGS.status_interval_s) == []
    assert store.tick(0.2 + SETTINGS.status_interval_s) == [SendStatus(3)]
    assert store.tick(0.1 + SETTINGS.pull_interval_s) == [SendPull()]


# ---------------------------------------------------------------------------- acks HQ should not send


def test_hq_stuck_below_what_it_acknowledged_raises_the_alert_and_progress_clears_it() -> None:
    store = link(acked=6, written=7)
    online(store)
    store.tick(0.1)
    for n in range(1, STALE_GAPS_ALERT):
        assert store.ack(0.1 + n, 3, gap=True) == [], "a late ack from another aggregator is ignored"
    assert store.ack(1.0 + STALE_GAPS_ALERT, 3, gap=True) == [AlertHqBehind(3, 6)]
    assert store.machine.acked == 6, "the mark never goes back"
    assert store.ack(9.0, 7)[0] == Acknowledge(7, clear_alert=True)


def test_an_ack_going_backwards_without_a_gap_changes_nothing() -> None:
    store = link(written=40)
    online(store)
    store.tick(0.1)
    store.ack(0.2, 20)
    assert store.machine.sent_upto == 40
    commands = store.ack(0.3, 12)
    assert of(Acknowledge, commands) == [] and of(Resend, commands) == [] and sends(commands) == []
    assert (store.machine.acked, store.machine.sent_upto) == (20, 40)


def test_an_ack_beyond_what_was_sent_but_written_is_believed() -> None:
    # Sent on an earlier connection, acknowledged after the reconnect rewound the window.
    store = link(written=30)
    online(store)
    store.tick(0.1)
    store.feed(Disconnected(0.2, "lost"))
    online(store, now=0.3)
    commands = store.ack(0.4, 25)
    assert commands == [Acknowledge(25, clear_alert=False), SendEvents(25, 10)]


def test_an_ack_for_a_seq_never_written_is_not_believed() -> None:
    store = link(written=30)
    online(store)
    store.tick(0.1)
    assert store.ack(0.2, 10**9)[0] == Acknowledge(30, clear_alert=False), "only as far as the outbox goes"
    progress = store.machine.last_progress
    assert store.ack(9.0, 10**9) == [], "nothing left to acknowledge: not progress either"
    assert store.machine.last_progress == progress


def test_the_outbox_found_empty_stops_the_pump_until_the_next_tick() -> None:
    store = link(written=5)
    online(store)
    machine = store.machine
    assert of(SendEvents, machine.handle(Tick(0.1, 8))) == [SendEvents(0, 10)]
    assert machine.handle(EventsSent(0.1, 0, 0)) == [], "another process's count was ahead of its rows"
    assert of(SendEvents, machine.handle(Tick(0.2, 8))) == [SendEvents(0, 10)]


# ---------------------------------------------------------------------------- downstream


def page(from_seq: int = 0, to_seq: int = 1, latest: int = 1) -> ChangePage:
    return ChangePage(from_seq, to_seq, latest, [])


def chunk(next_entity: str | None) -> SnapshotChunk:
    return SnapshotChunk("1.2.x", 1, "products", [], None, next_entity)


def test_bootstrap_chunk_by_chunk_then_the_feed() -> None:
    store = link(bootstrapped=False)
    online(store)
    assert store.feed(PageReceived(0.1, page())) == [], "before the snapshot, pushed pages are skipped"
    first = chunk("members")
    assert store.feed(ChunkReceived(0.2, first)) == [ApplyChunk(first)]
    assert store.feed(ChunkApplied(0.3, done=False)) == [RequestSnapshot()]
    assert of(RequestSnapshot, store.tick(0.3 + SNAPSHOT_RETRY_S)) == []
    assert of(RequestSnapshot, store.tick(0.4 + SNAPSHOT_RETRY_S)) == [RequestSnapshot()], "a lost chunk is asked again"
    assert store.feed(ChunkApplied(6.0, done=True)) == [SendPull()]
    assert store.feed(ChunkReceived(6.1, first)) == [], "a late chunk after the bootstrap is ignored"
    assert store.feed(PageReceived(6.2, page())) == [ApplyPage(page())]


def test_a_skipped_chunk_asks_for_nothing() -> None:
    # Asked on connecting and again on HQ's announcement: the second answer is skipped by the replica, and
    # asking again on its behalf would keep two chains of requests going, every chunk sent twice.
    store = link(bootstrapped=False)
    online(store)
    assert store.feed(ChunkApplied(0.3, done=False, stale=True)) == []
    assert store.feed(ChunkApplied(0.4, done=False)) == [RequestSnapshot()]


def test_an_interrupted_bootstrap_resumes_where_the_replica_stands() -> None:
    store = link(bootstrapped=False)  # a new agent after a power cut: the adapter sends the saved progress
    assert online(store)[-1] == RequestSnapshot()


def test_pages_ask_again_for_gaps_and_backlog_and_say_when_caught_up() -> None:
    store = link()
    online(store)  # pulled at 0.0
    assert store.feed(PageApplied(PULL_RETRY_S - 0.1, gap=True, behind=True)) == [], "not once per pushed page"
    assert store.feed(PageApplied(PULL_RETRY_S + 0.1, gap=True, behind=True)) == [SendPull()]
    assert store.feed(PageApplied(PULL_RETRY_S + 0.2, gap=False, behind=True)) == [SendPull()]
    assert store.feed(PageApplied(PULL_RETRY_S + 0.3, gap=False, behind=False)) == [CaughtUp()]


def test_nothing_is_asked_without_a_connection() -> None:
    store = link(bootstrapped=False)
    assert store.feed(ChunkApplied(0.1, done=False)) == []
    assert store.tick(100.0) == []


# ---------------------------------------------------------------------------- reconnect storms


def test_a_reconnect_storm_keeps_sessions_births_and_the_mark_straight() -> None:
    rng = random.Random(4)
    store = link()
    reconnects = Reconnects(5_000_000, rng)
    births: list[SendBirth] = []
    now = 0.0
    for _ in range(200):
        now += 0.01
        births += of(SendBirth, online(store, now, reconnects.connected(now)))
        store.written += rng.randint(0, 15)
        sent = sends(store.tick(now))
        if sent:
            assert sent[0][0] == store.machine.acked, "every connection resends from the mark"
        if rng.random() < 0.5 and store.machine.sent_upto:
            store.ack(now, rng.randint(0, store.machine.sent_upto), gap=rng.random() < 0.3)
        now += 0.01
        store.feed(Disconnected(now, "dropped"))
        wait = reconnects.lost(now)
        assert store.tick(now) == [], "nothing goes out between connections"
        now += wait
    assert [b.bdseq for b in births] == list(range(5_000_000, 5_000_200)), "a new session number per connection"
    marks = [b.acked for b in births]
    assert marks == sorted(marks), "the acknowledged mark never goes back"


def test_reconnect_waits_grow_to_the_cap_while_connections_keep_dropping() -> None:
    reconnects = Reconnects(0, random.Random(1), base_s=1.0, cap_s=30.0, stable_s=30.0)
    now, waits = 0.0, []
    for _ in range(12):
        reconnects.connected(now)
        now += 0.5  # accepted, then dropped at once
        waits.append(reconnects.lost(now))
        now += waits[-1]
    ceilings = [reconnects.ceiling(n) for n in range(12)]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings)), list(zip(waits, ceilings))
    assert ceilings[-1] == 30.0 and waits[-1] >= 15.0, "a flapping broker is not hammered at the shortest wait"
    assert reconnects.failed(now) >= 15.0, "failed attempts keep the wait up too"


def test_a_stable_connection_starts_the_waits_over() -> None:
    reconnects = Reconnects(0, random.Random(2), base_s=1.0, cap_s=30.0, stable_s=30.0)
    for n in range(6):
        reconnects.failed(float(n))
    reconnects.connected(10.0)
    assert reconnects.lost(10.0 + 30.0) <= 1.0


def test_stores_that_lost_the_same_broker_do_not_come_back_in_lockstep() -> None:
    first = [Reconnects(0, random.Random(seed)).lost(0.0) for seed in range(200)]
    assert all(0.5 <= wait <= 1.0 for wait in first)
    assert statistics.pstdev(first) > 0.1, "spread over the whole jitter range"
    assert len({round(wait, 3) for wait in first}) > 150


def test_reconnect_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        Reconnects(0, random.Random(), base_s=5.0, cap_s=1.0)


# ---------------------------------------------------------------------------- batches


def events(count: int, size: int) -> list[Event]:
    return [Event(seq, uuid.uuid4().hex, "stock.adjusted", 1, 0, {"reason": "x" * size}) for seq in range(1, count + 1)]


def test_a_batch_that_fits_goes_whole_with_the_backlog_after_it() -> None:
    body, count = batch_body(STREAM, events(5, 10), written=12, max_bytes=10_000)
    batch = decode(body, EventBatch)
    assert (count, len(batch.events), batch.backlog) == (5, 5, 7)


def test_an_oversized_batch_is_halved_and_keeps_its_backlog() -> None:
    body, count = batch_body(STREAM, events(16, 1000), written=20, max_bytes=5000)
    batch = decode(body, EventBatch)
    assert len(body) <= 5000 and count == len(batch.events) < 16
    assert batch.backlog == 20 - batch.events[-1].seq


def test_a_single_event_over_the_limit_still_goes_alone() -> None:
    body, count = batch_body(STREAM, events(3, 9000), written=3, max_bytes=5000)
    batch = decode(body, EventBatch)
    assert count == 1 and batch.backlog == 2
