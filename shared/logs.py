"""Logging for the long-running commands (store agent, aggregator): ``--log-level`` and the output form.

Run by hand, lines carry their own timestamp. Under systemd (stderr is the journal stream named by
JOURNAL_STREAM) each line starts with its syslog priority, ``<3>`` for an error, as sd-daemon(3)
describes, and carries no timestamp: the journal stamps it, so `journalctl -p err` finds errors.
"""

from __future__ import annotations

import argparse
import logging
import os
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


def configure_logging(level: str, stream: TextIO | None = None, environ: Mapping[str, str] = os.environ) -> None:
    """Root logging at ``level`` to stderr: journal form under systemd, plain text with timestamps otherwise."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    journal = writes_to_journal(stream, environ)
    handler.setFormatter(JournalFormatter() if journal else logging.Formatter(PLAIN_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
