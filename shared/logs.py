"""Logging for the long-running commands (store agent, aggregator): ``--log-level`` and the output form.

Run by hand, lines carry their own timestamp. Under systemd (stderr is the journal stream named by
JOURNAL_STREAM) each line starts with its syslog priority, ``<3>`` for an error, as sd-daemon(3)
describes, and carries no timestamp: the journal stamps it, so `journalctl -p err` finds errors.
Where journald's socket is there, entries go to it in the journal's native protocol instead, with
structured fields: the store id, and a record's ``event_type`` or ``reader`` (logging's ``extra=``), so
`journalctl TENPO_STORE_ID=S001` or `journalctl TENPO_READER=dock-1` select them.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import struct
import sys
from collections.abc import Mapping
from typing import TextIO

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(text: str) -> str:
    """An argparse type: a level name in any case, or a usage error listing the names."""
    level = text.strip().upper()
    if level not in LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level (one of {', '.join(LEVELS)})")
    return level


def add_log_level_flag(parser: argparse.ArgumentParser) -> None:
    # A string default goes through `type` too, so a bad TENPO_LOG_LEVEL is a usage error as well.
    parser.add_argument("--log-level", type=log_level, default=os.environ.get("TENPO_LOG_LEVEL", "INFO"),
                        help=f"{', '.join(LEVELS)} (default: $TENPO_LOG_LEVEL or INFO)")  # fmt: skip


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# syslog(3) priorities by logging level; a level between two takes the more severe one's.
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
DEBUG_PRIORITY = 7


def syslog_priority(levelno: int) -> int:
    return next((priority for level, priority in PRIORITIES if levelno >= level), DEBUG_PRIORITY)


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message``; every line of a traceback gets the prefix, since journald reads
    each line of the stream as its own entry (an unprefixed line would be stored as info)."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines() or [""])


def writes_to_journal(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """True when ``stream`` is the journal stream systemd connected (JOURNAL_STREAM is "device:inode").

    Compared, not just tested for presence: a child whose stderr was redirected inherits the variable.
    """
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        stat = os.fstat(stream.fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):  # unset or malformed variable; a stream without a file
        return False


JOURNAL_SOCKET = "/run/systemd/journal/socket"
# TENPO_JOURNAL_SOCKET overrides the socket's path; empty means stderr only (tests set it).
JOURNAL_SOCKET_ENV = "TENPO_JOURNAL_SOCKET"
# Record attributes (logging's extra=) that become journal fields.
RECORD_FIELDS = {"store_id": "TENPO_STORE_ID", "event_type": "TENPO_EVENT_TYPE", "reader": "TENPO_READER"}


def journal_entry(record: logging.LogRecord, message: str, fields: Mapping[str, str]) -> bytes:
    """One entry in the journal's native protocol (systemd.journal-fields(7)); a value holding a newline
    (a traceback) goes as name, newline, 64-bit little-endian length, bytes."""
    values = {
        "MESSAGE": message, "PRIORITY": str(syslog_priority(record.levelno)), "SYSLOG_IDENTIFIER": "tenpo",
        "TENPO_LOGGER": record.name, "CODE_FILE": record.pathname, "CODE_LINE": str(record.lineno),
        "CODE_FUNC": record.funcName, **fields,
        **{name: str(getattr(record, attr)) for attr, name in RECORD_FIELDS.items() if hasattr(record, attr)},
    }  # fmt: skip
    out = bytearray()
    for name, value in values.items():
        if value is None:  # funcName of a record made by hand
            continue
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """Sends each record to journald's socket; a record it cannot take goes to ``fallback`` (stderr)."""

    def __init__(self, address: str, fields: Mapping[str, str], fallback: logging.Handler) -> None:
        super().__init__()
        self.address = address
        self.fields = dict(fields)
        self.fallback = fallback
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._socket.sendto(journal_entry(record, self.format(record), self.fields), self.address)
        except OSError:  # journald restarting, or an entry over the datagram limit: never lose the line
            self.fallback.handle(record)

    def close(self) -> None:
        self._socket.close()
        super().close()


def configure_logging(level: str, stream: TextIO | None = None, environ: Mapping[str, str] = os.environ,
                      fields: Mapping[str, str] | None = None) -> None:  # fmt: skip
    """Root logging at ``level``: the journal under systemd (native protocol with ``fields`` where its socket
    is, else priority-prefixed stderr), plain text with timestamps on stderr otherwise."""
    stream = stream or sys.stderr
    handler: logging.Handler = logging.StreamHandler(stream)
    if not writes_to_journal(stream, environ):
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    else:
        handler.setFormatter(JournalFormatter())
        address = environ.get(JOURNAL_SOCKET_ENV, JOURNAL_SOCKET)
        if address and os.path.exists(address):
            handler = JournalHandler(address, {f"TENPO_{key.upper()}": value for key, value in (fields or {}).items()},
                                     handler)  # fmt: skip
    logging.basicConfig(level=level, handlers=[handler])
    # APScheduler says at INFO every job it adds and runs (several a minute at HQ): the jobs log what they did.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))
