"""The `tenpo` command: one argparse tree, each area registers its own subcommands.

Each area module exposes ``register(subparsers)`` which adds its parsers and sets
``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit status).
Exit status: 0 success, 1 a failure the user must act on, 2 bad usage (argparse's own).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from tenpo import __version__
from tenpo.shared.errors import TenpoError

# Modules that contribute subcommands; each has register(subparsers).
COMMAND_MODULES: tuple[str, ...] = (
    "tenpo.edge.cli",
    "tenpo.cloud.cli",
    "tenpo.edge.rfid.cli",
    "tenpo.shared.cli_epc",
    "tenpo.edge.ble.cli",
    "tenpo.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenpo", description="Tenpo store edge agent, cloud aggregator and tools."
    )
    parser.add_argument("--version", action="version", version=f"tenpo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # area not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TenpoError as exc:
        print(f"tenpo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
