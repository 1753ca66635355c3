"""What every `tenpo cloud ...` (and `tenpo hq`) command shares: the ``--db`` flag and JSON output.
The cloud group and the area CLIs import it, so no area CLI has to import the group that registers it.
"""

from __future__ import annotations

import argparse
import os

from tenpo.shared.terminal import print_json as print_json  # re-exported for the area CLIs

DEFAULT_DB = "sqlite:///central.db"


def db_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--db`` as every cloud command takes it."""
    parser.add_argument(
        "--db", default=os.environ.get("TENPO_DB", DEFAULT_DB),
        help="sqlite:///path or postgresql://... (default: $TENPO_DB or sqlite:///central.db)",
    )  # fmt: skip
    return parser

