"""The `tenpo` command: one argparse tree, each area registers its own subcommands.

Each area module exposes ``register(subparsers)`` which adds its parsers and sets
``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit status).
Exit status: 0 success, 1 a failure the user must act on, 2 bad usage (argparse's own).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sqlite3
import sys
from collections.abc import Sequence

from tenpo import __version__
from tenpo.edge.db import explain, is_storage_fault
from tenpo.shared.errors import TenpoError
from tenpo.shared.filemodes import private_umask
from tenpo.shared.terminal import guarded

# Command groups and the modules that register them (each has register(subparsers)).
COMMAND_MODULES: dict[str, str] = {
    "edge": "tenpo.edge.cli",
    "cloud": "tenpo.cloud.cli",
    "rfid": "tenpo.edge.rfid.cli",
    "epc": "tenpo.shared.cli_epc",
    "ble": "tenpo.edge.ble.cli",
    "hq": "tenpo.cloud.hq.cli",
    "clerk": "tenpo.edge.clerk.cli",
    "provision": "tenpo.provision",
    "channel": "tenpo.channel",  # issue 18: the channel API client
    "demo": "tenpo.demo",
    "doctor": "tenpo.doctor",
}


def _modules_for(argv: Sequence[str]) -> list[str]:
    """Import only the group being run: the store agent should not carry HQ's or the demo's imports."""
    for word in argv:
        if word.startswith("-"):
            continue
        if word in COMMAND_MODULES:
            return [COMMAND_MODULES[word]]
        break
    return list(COMMAND_MODULES.values())


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenpo", description="Tenpo store edge agent, cloud aggregator and tools."
    )
    parser.add_argument("--version", action="version", version=f"tenpo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in _modules_for(argv):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # area not built yet
                continue
            raise
        register = getattr(module, "register", None)
        if register is not None:  # an area whose commands are still being built adds none
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    private_umask()  # keys, replicas, reports, exports, backups: the owner's alone (children inherit it)
    # Names and notes come from customers and other stores: their escapes are shown, never obeyed.
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = guarded(stdout), guarded(stderr)
    try:
        return _run(argv)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing left to say
                stream.flush()
        sys.stdout, sys.stderr = stdout, stderr


def _run(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that went away must show up here, not at exit
        return status
    except TenpoError as exc:
        print(f"tenpo: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_status", 1))  # 2: a usage error found by the command (e.g. no --clerk)
    except sqlite3.DatabaseError as exc:
        if not is_storage_fault(exc):
            raise
        print(f"tenpo: {explain(exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return _reader_gone()
    except KeyboardInterrupt:
        return 130


def _reader_gone() -> int:
    """`tenpo ... --json | head`: the reader closed the pipe. Stop quietly, as a SIGPIPE'd tool would.

    Python would flush stdout again at exit and complain about the same pipe, so stdout is pointed
    at /dev/null first (the recipe in the Python docs, "Note on SIGPIPE").
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13  # the shell's status for a process stopped by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
