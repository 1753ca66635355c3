"""`tenpo rfid simulate` and `tenpo rfid listen`."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from tenpo.edge.rfid.profile import ReaderProfile
from tenpo.edge.rfid.reads import TagRead
from tenpo.edge.rfid.registry import PROTOCOLS, load_profile
from tenpo.edge.rfid.simulator import ReaderSimulator, load_tags
from tenpo.edge.rfid.transport import ReaderConnection
from tenpo.shared.errors import UserError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("rfid", help="UHF RFID readers: listen to one, or simulate one")
    commands = parser.add_subparsers(dest="rfid_command", metavar="COMMAND")
    commands.required = True

    simulate = commands.add_parser(
        "simulate",
        help="simulate a reader on a pseudo-terminal",
        description="Open a PTY, print its path on the first line, answer configuration commands "
        "as the module does and stream tag reads. Example: tenpo rfid simulate --protocol mercury "
        "--rate 50 --noise 0.01",
    )
    simulate.add_argument("--protocol", choices=PROTOCOLS, required=True)
    simulate.add_argument("--tags", help="file with one EPC per line, or EPC,ANTENNA,RSSI")
    simulate.add_argument("--rate", type=float, default=20.0, help="tag reads per second (default 20)")
    simulate.add_argument("--noise", type=float, default=0.0,
                          help="probability per frame of line noise or a cut frame (default 0)")
    simulate.add_argument("--link", help="also keep a symlink to the PTY at this path")
    simulate.add_argument("--duration", type=float, help="stop after this many seconds")
    simulate.add_argument("--seed", type=int, help="random seed, for repeatable noise")
    simulate.set_defaults(func=_simulate)

    listen = commands.add_parser(
        "listen",
        help="read tags from a reader and print them",
        description="Configure a reader, print one line per tag read and, at the end, the counts "
        "of frames read, frames rejected and distinct EPCs. Example: tenpo rfid listen --port "
        "/dev/ttyUSB0 --protocol mercury --duration 10 --json",
    )
    listen.add_argument("--port", help="device path, socket://host:port or rfc2217://host:port")
    listen.add_argument("--protocol", choices=PROTOCOLS)
    listen.add_argument("--baud", type=int, default=115200, help="default 115200")
    listen.add_argument("--profile", help="reader profile TOML (port, protocol, region, power...)")
    listen.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    listen.add_argument("--json", action="store_true", help="one JSON object per read and at the end")
    listen.set_defaults(func=_listen)


def _simulate(args: argparse.Namespace) -> int:
    try:
        tags = load_tags(args.tags) if args.tags else None
    except (OSError, ValueError) as exc:
        raise UserError(f"tags file {args.tags}: {exc}") from None
    if args.rate <= 0 or not 0 <= args.noise <= 1:
        raise UserError("--rate must be above 0 and --noise between 0 and 1")
    simulator = ReaderSimulator(args.protocol, tags, args.rate, args.noise, seed=args.seed, link=args.link)
    print(simulator.start(), flush=True)
    try:
        threading.Event().wait(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    print(f"reads sent: {simulator.counters.reads_sent}", file=sys.stderr)
    return 0


def _profile(args: argparse.Namespace) -> ReaderProfile:
    if args.profile:
        profile = load_profile(args.profile)
        if args.port or args.protocol:
            raise UserError("give either --profile or --port/--protocol, not both")
        return profile
    if not args.port or not args.protocol:
        raise UserError("--port and --protocol are needed (or --profile FILE)")
    return ReaderProfile(port=args.port, protocol=args.protocol, baud=args.baud, name="listen")


def _listen(args: argparse.Namespace) -> int:
    profile = _profile(args)
    epcs: set[str] = set()
    lock = threading.Lock()
    count = 0

    def on_read(read: TagRead) -> None:
        nonlocal count
        with lock:
            count += 1
            epcs.add(read.epc)
            if args.json:
                line = json.dumps({"epc": read.epc, "rssi": read.rssi, "antenna": read.antenna,
                                   "ts": round(read.ts, 6)})
            else:
                rssi = "?" if read.rssi is None else f"{read.rssi:4d} dBm"
                line = f"{time.strftime('%H:%M:%S', time.localtime(read.ts))}  {read.epc}  ant {read.antenna}  {rssi}"
            print(line, flush=True)

    connection = ReaderConnection(profile, on_read)
    connection.start()
    try:
        threading.Event().wait(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        connection.stop()
    summary = {
        "reads": count,
        "frames_read": connection.stats.frames_ok,
        "frames_rejected": connection.stats.frames_rejected,
        "distinct_epcs": len(epcs),
        "reconnects": max(0, connection.connects - 1),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(" ".join(f"{name}={value}" for name, value in summary.items()))
    if connection.connects == 0:
        raise UserError(f"could not open and configure {profile.port}: {connection.last_error}")
    return 0
