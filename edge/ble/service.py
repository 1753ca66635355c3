"""The agent's beacon service: scan, resolve members, judge presence, write visits and their events.

Enabled by a ``[beacons]`` section in the store config::

    [beacons]
    registry = "beacons.toml"   # relative to the config file
    adapter = "hci0"            # optional; BlueZ's default adapter otherwise
    mode = "auto"               # auto | active | passive

Time: every business time (advertisement stamps, leave timeouts, retention, replay due times) comes
from the injected ``clock`` (the wall clock by default), so a test can move it instead of sleeping.

Threads: the event loop owns the pipelines (decoding is fast and runs in the scanner callback);
every database call runs on one worker thread that owns the service's connection, so a slow disk,
a member-table reload or a resolver rebuild never stalls the scanner. Without Bluetooth the
service reports "unavailable" once and carries on: replays, pruning and member refresh still run,
and the scanner keeps looking for an adapter.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tenpo.edge import db as edge_db
from tenpo.edge.config import StoreConfig
from tenpo.shared.beacon_id import window_of
from tenpo.shared.errors import ConfigError

from . import ids, inbox
from .advert import Advertisement
from .pipeline import BeaconPipeline
from .presence import PresenceEvent
from .recording import parse_recording_line
from .registry import FirstVisitRule, Registry, load_registry
from .rotating_id import IdTableResolver
from .scanner import BleScanner
from .schema import prune
from .store import PresenceWriter

log = logging.getLogger("tenpo.edge.ble.service")

T = TypeVar("T")
Report = Callable[..., None]

TICK_S = 1.0  # leave timeouts and dwell coupons are judged this often
INBOX_POLL_S = 0.2
MEMBERS_POLL_S = 2.0
PRUNE_EVERY_S = 3600.0
REPORT_EVERY_S = 30.0
PREBUILD_LEAD_S = 30.0  # build the next window's resolver tables this long before the boundary
LIVE = "scan"
SECTION_KEYS = {"registry", "adapter", "mode"}


def beacon_settings(config: StoreConfig) -> tuple[Path, str | None, str] | None:
    """(registry path, adapter, mode) from ``[beacons]``, or None when the section is absent."""
    section = config.section("beacons")
    if not section:
        return None
    unknown = sorted(set(section) - SECTION_KEYS)
    if unknown:
        raise ConfigError(f"config {config.path}: beacons.{unknown[0]}: unknown setting")
    registry = section.get("registry")
    if not isinstance(registry, str) or not registry.strip():
        raise ConfigError(f"config {config.path}: beacons.registry: must be the path of a beacons.toml")
    adapter = section.get("adapter")
    if adapter is not None and (not isinstance(adapter, str) or not adapter):
        raise ConfigError(f"config {config.path}: beacons.adapter: must be an adapter name like hci0")
    mode = section.get("mode", "auto")
    if mode not in ("auto", "active", "passive"):
        raise ConfigError(f"config {config.path}: beacons.mode: must be auto, active or passive, got {mode!r}")
    path = Path(registry)
    return (path if path.is_absolute() else config.path.parent / path), adapter, mode


async def run_service(config: StoreConfig, stop: asyncio.Event, report: Report) -> None:
    try:
        settings = beacon_settings(config)
        if settings is None:
            return
        registry = load_registry(settings[0])
    except ConfigError as exc:
        # A wrong file does not fix itself: say so once and stay out of the way until a restart.
        log.error("beacons disabled: %s", exc)
        report("failed", error=str(exc))
        return
    service = BeaconService(config, registry, report, adapter=settings[1], mode=settings[2])
    await service.run(stop)


REPLAY_AHEAD_WINDOWS = 6  # a replay's resolver holds this many windows past its first advert (an hour)


def _fresh_resolver(conn: sqlite3.Connection, window_s: int, drift: int, at: float, ahead: int = 0) -> IdTableResolver:
    """A resolver for the windows around ``at`` from the members' day keys (issue 14: no secrets here)."""
    current = window_of(at, window_s)
    rows = ids.window_rows(conn, current - drift, current + drift + ahead)  # streamed: no dict of every member
    return IdTableResolver.from_rows(rows, window_s=window_s, drift_windows=drift)


class ReplaySession:
    """One `tenpo ble replay` being fed: its own engine, on the recording's (shifted) clock."""

    __slots__ = ("pipeline", "last_tick", "last_at")

    def __init__(self, pipeline: BeaconPipeline) -> None:
        self.pipeline = pipeline
        self.last_tick = float("-inf")
        self.last_at = float("-inf")


class BeaconService:
    def __init__(self, config: StoreConfig, registry: Registry, report: Report, *,
                 adapter: str | None = None, mode: str = "auto", scanner_factory: Any = None,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.config = config
        self.registry = registry
        self.clock = clock
        self._report = report
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="ble-db")
        self._db: Any = None
        self.writer = PresenceWriter(config.store_id)
        self.members: set[str] = set()  # members the live resolver can recognise now
        self.live = BeaconPipeline(registry, last_visit=self._last_visit)
        self.replays: dict[str, ReplaySession] = {}
        self.replayed = 0
        self.replay_bad_lines = 0
        self._pending: list[PresenceEvent] = []
        self._wake = asyncio.Event()
        # One flush and one member refresh at a time: when tick() or refresh_members() returns, what they
        # started is done, even if a background task was already half-way through the same step.
        self._flushing = asyncio.Lock()
        self._refreshing = asyncio.Lock()
        self._scanner = BleScanner(self._heard, adapter=adapter, mode=mode, factory=scanner_factory,  # type: ignore[arg-type]
                                   clock=clock)  # fmt: skip
        self._state: str | None = None

    # --- plumbing -------------------------------------------------------------------------------

    async def _db_call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def _last_visit(self, member_id: str) -> float | None:
        return self.writer.last_arrival.get(member_id)

    def _heard(self, adv: Advertisement) -> None:
        events = self.live.feed(adv)
        if events:
            self._pending += events
            self._wake.set()

    # --- the run --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._state = "starting"
        self._report("starting")
        self._db = await self._db_call(edge_db.connect, self.config.database)
        try:
            interrupted = await self._db_call(self._start_db)
            if interrupted:
                log.warning("closed %d visit(s) left open when the agent last stopped", interrupted)
            await self.refresh_members(force=True)
            tasks = [
                asyncio.create_task(self._scanner.run(stop), name="ble-scanner"),
                asyncio.create_task(self._every(stop, TICK_S, self.tick), name="ble-tick"),
                asyncio.create_task(self._every(stop, INBOX_POLL_S, self._consume_inbox), name="ble-inbox"),
                asyncio.create_task(self._every(stop, MEMBERS_POLL_S, self.refresh_members), name="ble-members"),
                asyncio.create_task(self._every(stop, PRUNE_EVERY_S, self._prune), name="ble-prune"),
                asyncio.create_task(self._every(stop, 0.5, self._report_state), name="ble-report"),
                asyncio.create_task(self._prebuild_windows(stop), name="ble-windows"),
                asyncio.create_task(self._flush_on_wake(stop), name="ble-flush"),
            ]
            try:
                await stop.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self._shutdown()
        finally:
            db, self._db = self._db, None
            await asyncio.get_running_loop().run_in_executor(self._worker, db.conn.close)
            self._worker.shutdown(wait=False)

    def _start_db(self) -> int:
        now = self.clock()
        longest = max((r.days for r in self.registry.coupon_rules if isinstance(r, FirstVisitRule)), default=0.0)
        with edge_db.transaction(self._db) as conn:
            interrupted = self.writer.close_interrupted(conn, now)
            prune(conn, now, self.registry.retention_days)
        self.writer.load(self._db.conn, now - longest * 86400.0)
        return interrupted

    async def _every(self, stop: asyncio.Event, seconds: float, step: Callable[[], Any]) -> None:
        while not stop.is_set():
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad step (a locked database, say) must not end the service
                log.exception("beacon service step %s failed", getattr(step, "__name__", step))
            try:
                await asyncio.wait_for(stop.wait(), seconds)
            except TimeoutError:
                pass

    # --- writing events -------------------------------------------------------------------------

    def _write(self, session: str, events: list[PresenceEvent], source: str,
               consumed: list[inbox.InboxRow] | None = None) -> None:  # fmt: skip
        with edge_db.transaction(self._db) as conn:
            self.writer.write(conn, session, events, source)
            if consumed:
                inbox.delete_rows(conn, consumed)

    async def _flush(self) -> None:
        async with self._flushing:
            events, self._pending = self._pending, []
            if events:
                await self._db_call(self._write, LIVE, events, "scan")

    async def _flush_on_wake(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def tick(self) -> None:
        """Judge leave timeouts and dwell coupons at ``clock()`` and write every event so far."""
        events = self.live.tick(self.clock())
        if events:
            self._pending += events
        await self._flush()

    async def _shutdown(self) -> None:
        now = self.clock()
        self._pending += self.live.engine.close_all(now)
        await self._flush()
        for replay_id, session in list(self.replays.items()):
            await self._db_call(self._write, replay_id, session.pipeline.engine.close_all(session.last_at), "replay")
        self.replays.clear()

    # --- replays from the inbox -----------------------------------------------------------------

    async def _replay_session(self, replay_id: str, first_t: float) -> ReplaySession:
        session = self.replays.get(replay_id)
        if session is None:
            member_app = self.registry.member_app
            resolver = await self._db_call(_fresh_resolver, self._db.conn, member_app.window_s,
                                           member_app.drift_windows, first_t, REPLAY_AHEAD_WINDOWS)  # fmt: skip
            pipeline = BeaconPipeline(self.registry, last_visit=self._last_visit)
            pipeline.resolver = resolver
            session = self.replays[replay_id] = ReplaySession(pipeline)
            log.info("replay %s: feeding a recording into the presence engine", replay_id[:8])
        return session

    async def _consume_inbox(self) -> None:
        rows = await self._db_call(lambda: inbox.due_rows(self._db.conn, self.clock()))
        # Group consecutive rows of one replay: each group's events and deletions are one transaction.
        while rows:
            replay_id = rows[0].replay
            group = []
            while rows and rows[0].replay == replay_id:
                group.append(rows.pop(0))
            await self._feed_replay(replay_id, group)

    async def _feed_replay(self, replay_id: str, rows: list[inbox.InboxRow]) -> None:
        events: list[PresenceEvent] = []
        ended = False
        session = self.replays.get(replay_id)
        for row in rows:
            if row.line is None:
                ended = True
                break
            adv = parse_recording_line(row.line)
            if adv is None:  # the command checked every line; only a hand-edited inbox gets here
                self.replay_bad_lines += 1
                continue
            if session is None:
                session = await self._replay_session(replay_id, adv.t)
            at = adv.t + row.shift_s
            events += session.pipeline.feed(adv, at=at)
            session.last_at = max(session.last_at, at)
            if at - session.last_tick >= TICK_S:
                events += session.pipeline.tick(at)
                session.last_tick = at
            self.replayed += 1
        if ended and session is not None:
            events += self._finish_replay(session.pipeline, session.last_at)
        if ended:
            self.replays.pop(replay_id, None)
            log.info("replay %s finished", replay_id[:8])
        await self._db_call(self._write, replay_id, events, "replay", rows)

    def _finish_replay(self, pipeline: BeaconPipeline, last_t: float) -> list[PresenceEvent]:
        """The recording is over, which to the engine is silence: let its clock run out the timeouts."""
        thresholds = [self.registry.presence, *(zone.thresholds for zone in self.registry.zones)]
        horizon = max(t.silence_timeout_s + t.leave_after_s for t in thresholds) + TICK_S
        events: list[PresenceEvent] = []
        step = 0.0
        while step <= horizon:
            events += pipeline.tick(last_t + step)
            step += TICK_S
        return events + pipeline.engine.close_all(last_t + horizon)

    # --- members --------------------------------------------------------------------------------

    def _members_fingerprint(self, last_version: int | None) -> tuple[int, Any] | None:
        conn = self._db.conn
        (data_version,) = conn.execute("PRAGMA data_version").fetchone()
        if data_version == last_version:
            return None
        fingerprint = conn.execute("SELECT max(version), count(*), total(erased) FROM members").fetchone()
        return data_version, (*fingerprint, ids.ids_version(conn))

    _data_version: int | None = None
    _fingerprint: Any = None

    async def refresh_members(self, force: bool = False) -> None:
        """Reload secrets when the members table changed (HQ's feed, an erasure, a merge)."""
        async with self._refreshing:
            await self._refresh_members(force)

    async def _refresh_members(self, force: bool) -> None:
        seen = await self._db_call(self._members_fingerprint, None if force else self._data_version)
        if seen is None:
            return
        self._data_version, fingerprint = seen
        if fingerprint == self._fingerprint and not force:
            return
        erasures = self._fingerprint is not None and fingerprint[2] != self._fingerprint[2]
        self._fingerprint = fingerprint
        if erasures:  # a member's location history goes with them now, not at the next hourly prune
            await self._prune()
        member_app = self.registry.member_app
        fresh = await self._db_call(_fresh_resolver, self._db.conn, member_app.window_s, member_app.drift_windows,
                                    self.clock())  # fmt: skip
        self._swap_live(fresh)
        for session in self.replays.values():  # an erased member stops resolving in a running replay too
            first = session.pipeline.resolver.windows() if isinstance(session.pipeline.resolver, IdTableResolver) else []
            if first:
                session.pipeline.resolver = await self._db_call(
                    _fresh_resolver, self._db.conn, member_app.window_s, 0, (first[0] + 0.5) * member_app.window_s,
                    len(first) - 1,
                )  # fmt: skip
                session.pipeline.resolver.drift_windows = member_app.drift_windows

    def _swap_live(self, fresh: IdTableResolver) -> None:
        old = self.live.resolver
        old.stats.windows_built += fresh.stats.windows_built
        fresh.stats = old.stats
        self.live.resolver = fresh
        self.members = set(fresh._members)

    async def _prebuild_windows(self, stop: asyncio.Event) -> None:
        """Swap in a resolver built off the loop for each new window, so the boundary never stalls scanning."""
        member_app = self.registry.member_app
        while not stop.is_set():
            boundary = (window_of(self.clock(), member_app.window_s) + 1) * member_app.window_s
            if await _sleep_until(stop, boundary - PREBUILD_LEAD_S, self.clock):
                return
            at = boundary + 0.5
            async with self._refreshing:  # one reload at a time: a feed change meanwhile reloads after
                fresh = await self._db_call(_fresh_resolver, self._db.conn, member_app.window_s,
                                            member_app.drift_windows, at)  # fmt: skip
            if await _sleep_until(stop, at, self.clock):
                return
            async with self._refreshing:
                self._swap_live(fresh)
                self._fingerprint = None  # the feed may have changed while it was built: look again

    # --- housekeeping and status ----------------------------------------------------------------

    def _prune_now(self) -> int:
        with edge_db.transaction(self._db) as conn:
            deleted = prune(conn, self.clock(), self.registry.retention_days)
            return deleted + ids.prune_ids(conn, self.clock(), self.registry.member_app.window_s)

    async def _prune(self) -> None:
        deleted = await self._db_call(self._prune_now)
        if deleted:
            log.info("deleted %d beacon row(s) past %d days' retention or of erased members",
                     deleted, self.registry.retention_days)  # fmt: skip

    def _detail(self) -> dict[str, Any]:
        return {
            "scanner": self._scanner.status,
            "members_resolvable": len(self.members),
            "members_present": len(self.live.engine.present_members()),
            "replays_running": len(self.replays),
            "replayed_adverts": self.replayed,
            "events_written": self.writer.written,
            "counters": self.live.counters(),
        }

    _last_report = 0.0

    async def _report_state(self) -> None:
        """Report on every change of scanner state (so "unavailable" once), and counters now and then."""
        available = self._scanner.available
        state = "running" if available else "unavailable" if available is False else "starting"
        now = time.monotonic()
        if state == self._state and (state != "running" or now - self._last_report < REPORT_EVERY_S):
            return
        self._state, self._last_report = state, now
        if state == "unavailable":
            reason = self._scanner.status.removeprefix("bluetooth unavailable: ")
            self._report("unavailable", reason=reason, **self._detail())
        else:
            self._report(state, **self._detail())


async def _sleep_until(stop: asyncio.Event, wall_t: float, clock: Callable[[], float]) -> bool:
    """Wait until ``clock`` reads about ``wall_t`` (measured once, then slept); True if ``stop`` was set first."""
    delay = wall_t - clock()
    if delay <= 0:
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), delay)
    except TimeoutError:
        return stop.is_set()
    return True
