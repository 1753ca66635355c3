"""``--log-level`` for the long-running commands (store agent, aggregator): checked at parse time."""

from __future__ import annotations

import argparse
import logging
import os
import sys

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


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
