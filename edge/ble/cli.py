"""`tenpo ble ...`: decode recorded advertisements, scan live, print a member's current identifier."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Iterable
from contextlib import nullcontext
from typing import IO, Any

from tenpo.edge.cli_support import open_store
from tenpo.edge.replica import agent_link
from tenpo.shared.beacon_id import app_rotating_id, check_secret, ibeacon_major_minor, window_of
from tenpo.shared.errors import UserError

from .advert import Advertisement
from .decode import DecodeStats, Frame, decode_frames, frame_to_dict
from .inbox import enqueue_replay
from .recording import RecordingStats, format_recording_line, parse_recording_line
from .scanner import BleScanner
from .service import beacon_settings


def register(subparsers: Any) -> None:
    ble = subparsers.add_parser("ble", help="Bluetooth beacons: decode, scan, member identifiers.")
    commands = ble.add_subparsers(dest="ble_command", metavar="COMMAND")
    commands.required = True

    decode = commands.add_parser(
        "decode",
        help="Decode recorded advertisements (JSON Lines on stdin) into beacon frames.",
        description="Reads one advertisement per line in the `tenpo ble scan --record` format.",
    )
    decode.add_argument("--json", action="store_true", help="one JSON object per decoded frame")
    decode.set_defaults(func=decode_command)

    scan = commands.add_parser("scan", help="Scan live with the Bluetooth adapter and print beacons heard.")
    scan.add_argument("--record", metavar="FILE", help="also write every advertisement heard to FILE (JSON Lines)")
    scan.add_argument("--json", action="store_true", help="one JSON object per decoded frame")
    scan.add_argument("--adapter", metavar="NAME", help="adapter to use, e.g. hci1 (default: BlueZ's default)")
    scan.add_argument("--mode", choices=("auto", "active", "passive"), default="auto", help="scanning mode")
    scan.add_argument("--seconds", type=float, metavar="N", help="stop after N seconds (default: until Ctrl-C)")
    scan.set_defaults(func=scan_command)

    member_id = commands.add_parser(
        "member-id",
        help="Print the rotating identifier a member's app advertises (for app developers).",
    )
    member_id.add_argument("--secret", required=True, metavar="HEX", help="the member's 16- or 32-byte secret")
    member_id.add_argument("--at", type=float, required=True, metavar="UNIX_SECONDS", help="moment to compute for")
    member_id.add_argument("--window-s", type=int, default=600, help="window length in seconds (v1: 600)")
    member_id.add_argument("--json", action="store_true", help="print as JSON")
    member_id.set_defaults(func=member_id_command)

    replay = commands.add_parser(
        "replay",
        help="Feed a recording into the running agent's presence engine (demos, tests, tuning).",
        description="Queues the advertisements of FILE (the `tenpo ble scan --record` format) in the store "
        "database; the agent's beacon service feeds them at the recording's pace. Visits are placed so "
        "the recording ends when the replay does. If the agent is not running, they wait for it.",
    )
    replay.add_argument("file", metavar="FILE", help="recorded advertisements, JSON Lines ('-' for stdin)")
    replay.add_argument("--config", help="store config TOML (default: $TENPO_CONFIG)")
    replay.add_argument("--speed", type=float, default=1.0, metavar="X",
                        help="1 = real time (default), 10 = ten times faster, 0 = as fast as possible")  # fmt: skip
    replay.add_argument("--json", action="store_true", help="print the result as JSON")
    replay.set_defaults(func=replay_command)


def frame_record(frame: Frame, adv: Advertisement) -> dict[str, object]:
    """The fixed decoded-output shape: the frame's fields, then address and rssi."""
    return {**frame_to_dict(frame), "address": adv.address, "rssi": adv.rssi}


def _frame_text(record: dict[str, object]) -> str:
    fields = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("type", "address", "rssi"))
    return f"{record['type']:<14} {fields}  [{record['address']} {record['rssi']} dBm]"


def _emit(frames: Iterable[Frame], adv: Advertisement, as_json: bool, out: IO[str]) -> None:
    for frame in frames:
        record = frame_record(frame, adv)
        out.write((json.dumps(record, ensure_ascii=False) if as_json else _frame_text(record)) + "\n")


def decode_command(args: argparse.Namespace) -> int:
    recording, stats = RecordingStats(), DecodeStats()
    try:
        for line in sys.stdin:
            adv = parse_recording_line(line, recording)
            if adv is not None:
                _emit(decode_frames(adv.manufacturer_data, adv.service_data, stats), adv, args.json, sys.stdout)
    except BrokenPipeError:  # `tenpo ble decode | head`: the reader has all it wanted
        _silence_stdout()
        return 0
    if not args.json or recording.bad_lines or stats.malformed:
        print(
            f"{recording.lines} advertisements, {stats.decoded} beacon frames; "
            f"{recording.bad_lines} unreadable lines, {stats.malformed} malformed frames",
            file=sys.stderr,
        )
    return 0


def _silence_stdout() -> None:
    # Python would complain again when flushing stdout at exit; point it at /dev/null instead.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _silent_logger() -> logging.Logger:
    # The command reports unavailability itself, as its one error line; the scanner's own
    # warning (meant for the agent's log) would print a second, different line.
    logger = logging.getLogger("tenpo.edge.ble.scan-command")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


def scan_command(args: argparse.Namespace) -> int:
    stats = DecodeStats()
    record_to = open(args.record, "w", encoding="utf-8") if args.record else nullcontext(None)  # noqa: SIM115
    with record_to as record_file:

        def heard(adv: Advertisement) -> None:
            if record_file is not None:
                record_file.write(format_recording_line(adv) + "\n")
                record_file.flush()
            _emit(decode_frames(adv.manufacturer_data, adv.service_data, stats), adv, args.json, sys.stdout)
            sys.stdout.flush()

        scanner = BleScanner(heard, adapter=args.adapter, mode=args.mode, logger=_silent_logger())
        try:
            asyncio.run(_scan_for(scanner, args.seconds))
        except KeyboardInterrupt:
            pass
        except BrokenPipeError:
            _silence_stdout()
            return 0
    if scanner.available is False:
        raise UserError(scanner.status)
    return 0


async def _scan_for(scanner: BleScanner, seconds: float | None) -> str:
    stop = asyncio.Event()
    if seconds is not None:
        asyncio.get_running_loop().call_later(seconds, stop.set)
    return await scanner.run(stop, give_up_when_unavailable=True)


def member_id_command(args: argparse.Namespace) -> int:
    try:
        secret = check_secret(bytes.fromhex(args.secret))
    except ValueError:
        raise UserError("--secret must be 16 or 32 bytes written as 32 or 64 hex digits") from None
    window = window_of(args.at, args.window_s)
    rid = app_rotating_id(secret, window, args.window_s)
    major, minor = ibeacon_major_minor(rid)
    result = {"window": window, "id": rid.hex(), "major": major, "minor": minor}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"window {window}: id {rid.hex()}  (iBeacon major {major}, minor {minor})")
    return 0


def _read_lines(name: str) -> list[str]:
    if name == "-":
        return sys.stdin.read().splitlines()
    try:
        with open(name, encoding="utf-8", errors="replace") as handle:
            return handle.read().splitlines()
    except OSError as exc:
        raise UserError(f"{name}: cannot read ({exc.strerror})") from None


def _agent_running(db: Any) -> bool:
    return agent_link(db.conn).running


def replay_command(args: argparse.Namespace) -> int:
    if args.speed < 0:
        raise UserError("--speed must be 0 (as fast as possible) or a positive factor")
    lines = _read_lines(args.file)
    config, db = open_store(args)
    if beacon_settings(config) is None:
        raise UserError(f"{config.path} has no [beacons] section with a registry: the agent would not read the replay")
    queued = enqueue_replay(db, lines, speed=args.speed)
    if not queued.queued:
        raise UserError(f"{args.file}: no readable advertisements ({queued.unreadable} unreadable lines)")
    running = _agent_running(db)
    db.conn.close()
    result = {
        "replay_id": queued.replay_id, "queued": queued.queued, "unreadable_lines": queued.unreadable,
        "recording_s": round(queued.duration_s, 3), "feed_s": round(queued.feed_s, 3),
        "shift_s": round(queued.shift_s, 3), "agent_running": running,
    }  # fmt: skip
    if args.json:
        print(json.dumps(result))
        return 0
    skipped = f"; {queued.unreadable} unreadable line(s) skipped" if queued.unreadable else ""
    print(f"queued {queued.queued} advertisements ({queued.duration_s:.0f} s recorded, "
          f"fed over {queued.feed_s:.0f} s){skipped}")  # fmt: skip
    if running:
        print("the agent is running: its beacon service is feeding them now")
    else:
        print("the agent is not running: the advertisements wait in the store database until it starts")
    return 0
