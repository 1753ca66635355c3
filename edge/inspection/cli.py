"""This area's `tenpo edge ...` subcommands."""

from __future__ import annotations

import argparse


def register_edge(commands: argparse._SubParsersAction) -> None:
    """Add subcommands to the `tenpo edge` group."""
