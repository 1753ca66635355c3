"""This area's `tenpo cloud ...` subcommands."""

from __future__ import annotations

import argparse


def register_cloud(commands: argparse._SubParsersAction) -> None:
    """Add subcommands to the `tenpo cloud` group."""
