"""Losing the PostgreSQL connection is not fatal: a failover, a restart, ``pg_terminate_backend`` or a cut network.

The aggregator, its channel API thread and the monitor tell a lost connection from a refused statement
(:func:`connection_lost`), wait with a bounded exponential back-off (:class:`Backoff`, logged once when the
connection is lost and once when it is back, not once per attempt) and open a new one (:func:`reopen`).
Work of the transaction that failed is not acknowledged: the store resends it (or the aggregator retries it
itself) and HQ applies each event once, because applying is idempotent by (store, stream, seq).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from tenpo.cloud import db as central_db
from tenpo.cloud.db import Central

log = logging.getLogger(__name__)

# SQLSTATE of a connection that is gone: class 08 (connection exception), the server shutting down or
# terminating the backend (57P01 admin, 57P02 crash, 57P03 cannot connect now, 57P05 idle session timeout).
_LOST_STATES = ("57P01", "57P02", "57P03", "57P05")
FIRST_WAIT_S = 0.2
MAX_WAIT_S = 30.0


class DatabaseLost(Exception):
    """The central database connection went away while handling something; nothing of it was committed
    as far as this process knows (a COMMIT whose answer was lost may have been: the retry finds it applied)."""


def connection_lost(db: Central, exc: BaseException | None = None) -> bool:
    """True if ``db``'s PostgreSQL connection is gone (``exc`` or one of its causes says so, or the
    connection is marked broken or closed); a refused statement (a constraint, a bad value) is not."""
    if db.dialect != "postgresql":
        return False
    conn = db.conn
    if getattr(conn, "broken", False) or getattr(conn, "closed", False):
        return True
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__module__.startswith("psycopg"):
            state = getattr(exc, "sqlstate", None) or ""
            if type(exc).__name__ == "InterfaceError" or state.startswith("08") or state in _LOST_STATES:
                return True
        exc = exc.__cause__ or exc.__context__
    return False


@dataclass(slots=True)
class Backoff:
    """Bounded exponential waits: 0.2 s, 0.4 s, ... up to 30 s; ``reset`` after a success."""

    first_s: float = FIRST_WAIT_S
    max_s: float = MAX_WAIT_S
    attempts: int = 0
    since: float = field(default_factory=time.monotonic)

    def next_wait(self) -> float:
        wait = min(self.max_s, self.first_s * 2.0 ** min(self.attempts, 16))
        self.attempts += 1
        return wait

    def reset(self) -> None:
        self.attempts = 0
        self.since = time.monotonic()


def reopen(db: Central, stop: threading.Event, who: str, reason: BaseException | None = None,
           backoff: Backoff | None = None) -> bool:  # fmt: skip
    """Roll back what is left, drop the connection and open a new one, waiting longer after each failure.
    Returns True once connected again, False if ``stop`` was set first. Logs the loss and the recovery once."""
    backoff = backoff or Backoff()
    backoff.reset()
    first = _first_line(reason) if reason is not None else "connection closed"
    log.warning("%s: PostgreSQL connection lost (%s); reconnecting with back-off up to %.0f s",
                who, first, backoff.max_s)  # fmt: skip
    last_error = ""
    while True:
        try:
            reconnect(db)
        except Exception as exc:  # the server is still down or refusing: wait longer, say so only if it changed
            error = _first_line(exc)
            if error != last_error:
                log.warning("%s: PostgreSQL not reachable yet (%s); still trying", who, error)
                last_error = error
            if stop.wait(backoff.next_wait()):
                return False
            continue
        log.warning("%s: reconnected to PostgreSQL after %d attempt(s), %.1f s without it",
                    who, backoff.attempts + 1, time.monotonic() - backoff.since)  # fmt: skip
        return True


def reconnect(db: Central) -> None:
    """Drop ``db``'s connection (whatever transaction it held is rolled back by the server) and open a new one;
    raises ConfigError if PostgreSQL cannot be reached. Migrations ran when ``db`` was first opened."""
    try:
        db.conn.close()
    except Exception:  # already gone
        log.debug("closing the lost connection failed", exc_info=True)
    db.conn = central_db._connect_postgresql(db.url)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
