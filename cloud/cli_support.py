"""What every `tenpo cloud ...` (and `tenpo hq`) command shares: the ``--db`` flag and JSON output.
The cloud group and the area CLIs import it, so no area CLI has to import the group that registers it.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from tenpo.shared.terminal import safe_text

DEFAULT_DB = "sqlite:///central.db"


def db_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--db`` as every cloud command takes it."""
    parser.add_argument(
        "--db", default=os.environ.get("TENPO_DB", DEFAULT_DB),
        help="sqlite:///path or postgresql://... (default: $TENPO_DB or sqlite:///central.db)",
    )  # fmt: skip
    return parser


def print_json(value: Any) -> None:
    # json escapes C0 controls; safe_text also shows DEL, C1 and bidi overrides as \uXXXX (still valid JSON)
    print(safe_text(json.dumps(value, ensure_ascii=False, indent=2, default=str), multiline=True))
