"""The dock door inside `tenpo edge run`: readers on their threads, one session engine, verdicts stored.

Each reader profile listed in ``[dock] readers`` gets a :class:`ReaderConnection` (its own thread,
reconnecting with back-off on its own). Reads cross into the event loop through an asyncio queue;
the session engine is fed in the loop and polled every tick; when a session closes the verdict is
computed and stored off the loop (a thread), pending for a clerk or accepted at once when
``auto_accept`` is on and the verdict is clean. A profile that cannot be loaded or a reader that
keeps failing is reported in `tenpo edge status`, never fatal to the other readers or the agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from tenpo.edge import db as edge_db
from tenpo.edge.config import StoreConfig
from tenpo.edge.inspection import store
from tenpo.edge.inspection.config import DockSettings, dock_settings
from tenpo.edge.inspection.matching import DOOR, INSIDE
from tenpo.edge.inspection.report import write_reports
from tenpo.edge.inspection.session import ClosedSession, DockSessions
from tenpo.edge.rfid.reads import TagRead
from tenpo.edge.rfid.transport import ReaderConnection, ReaderProfile, load_profile
from tenpo.shared.errors import ConfigError

log = logging.getLogger(__name__)

Reporter = Callable[..., None]
ReadTuple = tuple[str, "int | None", str, float]  # epc, rssi, side, ts

TICK_S = 0.05  # how often an idle door is polled for a closed session
REPORT_EVERY_S = 2.0


def conclude(db: sqlite_utils.Database, store_id: str, settings: DockSettings, closed: ClosedSession,
             now: float | None = None) -> store.InspectionRecord:  # fmt: skip
    """Judge and store a closed session; accept at once if configured and clean; write the reports."""
    record = store.record_inspection(db, store_id, closed, now=now)
    if settings.auto_accept and record.verdict.clean:
        record = store.accept(db, store_id, record.inspection_id, by="auto", location=settings.location)
    try:
        write_reports(record, settings.reports)
    except OSError as exc:  # a full or read-only disk must not lose the verdict, which is in the database
        log.warning("inspection %s: cannot write reports to %s: %s", record.inspection_id, settings.reports.directory, exc)
    return record


@dataclass(slots=True)
class DockState:
    """What `tenpo edge status` shows under services.readers."""

    readers: dict[str, dict[str, Any]] = field(default_factory=dict)
    inspections: int = 0
    last: dict[str, Any] | None = None


def _stop_all(connections: list[ReaderConnection]) -> None:
    for connection in connections:
        connection.stop()


def _reader_state(connection: ReaderConnection) -> dict[str, Any]:
    stats = connection.stats
    return {
        "port": connection.profile.port,
        "protocol": connection.profile.protocol,
        "connected": connection.connected.is_set(),
        "connects": connection.connects,
        "failures": connection.failures,
        "last_error": connection.last_error,
        "frames_ok": stats.frames_ok,
        "frames_rejected": stats.frames_rejected,
    }


def _side_reader(profile: ReaderProfile, loop: asyncio.AbstractEventLoop,
                 queue: asyncio.Queue[ReadTuple]) -> Callable[[TagRead], None]:  # fmt: skip
    inside = profile.inside_antenna

    def on_read(read: TagRead) -> None:  # on the reader's thread
        side = INSIDE if inside is not None and read.antenna == inside else DOOR
        loop.call_soon_threadsafe(queue.put_nowait, (read.epc, read.rssi, side, read.ts))

    return on_read


async def run_service(config: StoreConfig, stop: asyncio.Event, report: Reporter) -> None:
    settings = dock_settings(config)
    if not settings.readers:
        return  # no dock reader configured in this store
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[ReadTuple] = asyncio.Queue()
    state = DockState()
    connections: list[ReaderConnection] = []
    for path in settings.readers:
        try:
            profile = load_profile(path)
        except ConfigError as exc:
            log.error("dock reader profile skipped: %s", exc)
            state.readers[path.stem] = {"connected": False, "last_error": str(exc)}
            continue
        connection = ReaderConnection(profile, _side_reader(profile, loop, queue))
        connection.start()
        connections.append(connection)
    db = edge_db.connect(config.database)
    try:
        await _run_door(db, config.store_id, settings, queue, stop, report, state, connections)
    finally:
        await asyncio.to_thread(_stop_all, connections)
        db.conn.close()


async def _run_door(db: sqlite_utils.Database, store_id: str, settings: DockSettings, queue: asyncio.Queue[ReadTuple],
                    stop: asyncio.Event, report: Reporter, state: DockState,
                    connections: list[ReaderConnection]) -> None:  # fmt: skip
    sessions = DockSessions(settings.session)
    last_report = 0.0

    def publish(now: float) -> None:
        for c in connections:
            state.readers[c.profile.name] = _reader_state(c)
        healthy = all(r.get("connected") for r in state.readers.values()) and bool(state.readers)
        report("running" if healthy else "degraded", readers=state.readers, inspections=state.inspections,
               session={"open": sessions.is_open, "reads": sessions.current_reads, "tags": sessions.current_tags},
               last_inspection=state.last)  # fmt: skip

    async def finish(closed: ClosedSession) -> None:
        record = await asyncio.to_thread(conclude, db, store_id, settings, closed)
        state.inspections += 1
        state.last = {"inspection_id": record.inspection_id, "shipment_id": record.shipment_id,
                      "status": record.status, "clean": record.verdict.clean, "verdict_ms": record.verdict_ms}  # fmt: skip
        log.info("dock inspection %s (%s): %s", record.inspection_id, record.shipment_id, record.verdict.summary())

    while not stop.is_set():
        try:
            item = await asyncio.wait_for(queue.get(), TICK_S)
        except TimeoutError:
            item = None
        while item is not None:
            sessions.feed(*item)
            item = queue.get_nowait() if not queue.empty() else None
        now = time.time()
        closed = sessions.poll(now)
        if closed is not None:
            await finish(closed)
            publish(now)
            last_report = now
        elif now - last_report >= REPORT_EVERY_S:
            publish(now)
            last_report = now
    closed = sessions.close_now(time.time())
    if closed is not None:  # the agent is stopping mid-delivery: keep what was read, for a clerk to judge
        await finish(closed)
