"""systemd's notify protocol (sd_notify(3)) without a dependency: one datagram per message.

A `Type=notify` unit hands its main process NOTIFY_SOCKET (a unix datagram socket, '@' meaning the
abstract namespace) and, with `WatchdogSec=`, WATCHDOG_USEC. Outside systemd neither is set and every
call here does nothing, so the same code runs by hand, in tests and under the service manager.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send e.g. "READY=1"; False when there is no NOTIFY_SOCKET or the manager is gone (never raises)."""
    address = environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:  # the manager restarting, a full queue: the next ping tries again
        log.debug("sd_notify %r failed: %s", message, exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] = os.environ, pid: int | None = None) -> float | None:
    """Seconds between watchdog pings (half of WatchdogSec=), or None when no watchdog is asked of us.

    WATCHDOG_PID, when set, names the process meant (a child started with our environment is not it).
    """
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID")
    if usec <= 0 or (watchdog_pid and watchdog_pid != str(pid if pid is not None else os.getpid())):
        return None
    return usec / 1_000_000 / 2


async def watchdog_pings(interval: float, environ: Mapping[str, str] = os.environ) -> None:
    """Ping from the event loop until cancelled: a loop blocked for WatchdogSec sends nothing and is restarted.

    Deliberately a task on the loop, not a thread: a thread would keep pinging for a wedged agent.
    """
    while True:
        notify("WATCHDOG=1", environ)
        await asyncio.sleep(interval)


def start_watchdog(environ: Mapping[str, str] = os.environ) -> asyncio.Task[None] | None:
    """The ping task on the running loop, or None when systemd asked for no watchdog."""
    interval = watchdog_interval(environ)
    if interval is None:
        return None
    return asyncio.get_running_loop().create_task(watchdog_pings(interval, environ), name="sd-watchdog")


# Test only: tests/test_units.py sets this on a real `tenpo edge run` to prove a blocked loop stops the
# pings. No unit or doc sets it; unset (always, in production) it costs one dictionary look-up at start.
TEST_BLOCK_LOOP_ENV = "TENPO_TEST_BLOCK_LOOP_AFTER_S"


def schedule_test_block(environ: Mapping[str, str] = os.environ) -> None:
    """With TENPO_TEST_BLOCK_LOOP_AFTER_S=N, wedge the event loop N seconds from now (says so first)."""
    after = environ.get(TEST_BLOCK_LOOP_ENV)
    if after is None:
        return

    def block() -> None:
        notify("STATUS=test: event loop blocked", environ)
        time.sleep(3600)  # a synchronous call on the loop, like a wedged driver; the test kills us

    asyncio.get_running_loop().call_later(float(after), block)
