"""What every `tenpo edge ...` command shares: the ``--config`` and ``--json`` flags, JSON output and
opening the store's replica. The edge group and the area CLIs (checkout, clerk, inspection, beacons)
import it, so no area CLI has to import the group that registers it.
"""

from __future__ import annotations

import argparse

import sqlite_utils

from tenpo.edge import db as edge_db
from tenpo.edge.config import StoreConfig, load_config
from tenpo.shared.terminal import print_json as print_json  # re-exported for the area CLIs


def with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--config`` as every edge command takes it."""
    parser.add_argument("--config", help="store config TOML (default: $TENPO_CONFIG)")
    return parser


def json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")



def open_existing(config: StoreConfig) -> sqlite_utils.Database:
    # Only `init` and `run` create the replica: a mistyped path must not leave an empty one behind.
    return edge_db.connect(config.database, create=False)


def open_store(args: argparse.Namespace) -> tuple[StoreConfig, sqlite_utils.Database]:
    """The config and the migrated replica for an edge command."""
    config = load_config(args.config)
    return config, open_existing(config)
