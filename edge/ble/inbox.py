"""The replay inbox: how `tenpo ble replay` hands a recording to the running agent.

The two processes meet in the store's SQLite file. The command appends the recording's
advertisements to ``ble_inbox`` (Bluetooth addresses blanked first: the database never holds
one), followed by an end marker; the agent's beacon service consumes due rows in id order and
deletes them in the transaction that writes the events they caused. If the agent is not running,
the rows wait for it.

Time: a member identifier is resolved at its recorded ``t`` (the window it was advertised in),
but the visit is placed on today's clock: every ``t`` is shifted by one amount so that the
recording *ends* when its replay ends. At ``--speed 1`` that is "starts now", exactly as if it
were live; at ``--speed 0`` (as fast as possible) the whole recording lies in the moments just
past. Dwell times are always the recording's own.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace

import sqlite_utils

from tenpo.edge.db import transaction

from .recording import RecordingStats, format_recording_line, parse_recording_line


@dataclass(frozen=True, slots=True)
class ReplayQueued:
    replay_id: str
    queued: int  # advertisements written to the inbox
    unreadable: int  # lines that were not advertisements (skipped, counted)
    duration_s: float  # recorded span, first to last advertisement
    feed_s: float  # how long the agent takes to feed it at the chosen speed
    shift_s: float  # added to every recorded t


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: int
    replay: str
    shift_s: float
    line: str | None  # None: the replay ends here


def enqueue_replay(db: sqlite_utils.Database, lines: Iterable[str], *, speed: float = 1.0,
                   now: float | None = None) -> ReplayQueued:  # fmt: skip
    """Queue a recording for the agent. ``speed`` 1 is real time, 10 ten times faster, 0 all at once."""
    if speed < 0:
        raise ValueError("speed must be 0 (as fast as possible) or positive")
    stats = RecordingStats()
    adverts = [adv for line in lines if (adv := parse_recording_line(line, stats)) is not None]
    start = time.time() if now is None else now
    replay_id = uuid.uuid4().hex
    if not adverts:
        return ReplayQueued(replay_id, 0, stats.bad_lines, 0.0, 0.0, 0.0)
    first = min(adv.t for adv in adverts)
    last = max(adv.t for adv in adverts)
    feed_s = (last - first) / speed if speed > 0 else 0.0
    shift = start + feed_s - last
    rows: list[tuple[str, float, float, str | None, float]] = []
    for adv in adverts:
        feed_at = start + (adv.t - first) / speed if speed > 0 else start
        rows.append((replay_id, feed_at, shift, format_recording_line(replace(adv, address="")), start))
    rows.append((replay_id, start + feed_s, shift, None, start))
    with transaction(db) as conn:
        conn.executemany(
            "INSERT INTO ble_inbox(replay, feed_at, shift_s, line, created_at) VALUES (?, ?, ?, ?, ?)", rows
        )
    return ReplayQueued(replay_id, len(adverts), stats.bad_lines, last - first, feed_s, shift)


def due_rows(conn: sqlite3.Connection, now: float, limit: int = 500) -> list[InboxRow]:
    """Rows whose time has come, oldest first. Stops at the first row not yet due, so order holds."""
    rows = conn.execute(
        "SELECT id, replay, shift_s, line, feed_at FROM ble_inbox ORDER BY id LIMIT ?", (limit,)
    ).fetchall()
    due: list[InboxRow] = []
    for row_id, replay, shift, line, feed_at in rows:
        if feed_at > now:
            break
        due.append(InboxRow(row_id, replay, shift, line))
    return due


def delete_rows(conn: sqlite3.Connection, rows: list[InboxRow]) -> None:
    conn.executemany("DELETE FROM ble_inbox WHERE id = ?", [(row.id,) for row in rows])


def waiting(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM ble_inbox WHERE line IS NOT NULL").fetchone()[0])
