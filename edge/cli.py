"""`tenpo edge ...`: store-side commands. Thin: parse, call the replica or the agent, print."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tenpo.edge import bootstrap_bulk, replica
from tenpo.edge import db as edge_db
from tenpo.edge.agent import INTEGRITY_META_KEY, init_store, record_integrity, run_agent
from tenpo.edge.audit_cli import register_edge as audit_commands
from tenpo.edge.backup import backup_settings, backup_store, last_backup, restore_store
from tenpo.edge.checkout.cli import register_edge as checkout_commands
from tenpo.edge.clerk.accounts import Action, record_action
from tenpo.edge.clerk.cli import register_edge as clerk_commands
from tenpo.edge.clerk.records import record_member_access
from tenpo.edge.cli_support import (  # roles on store commands (docs/roles.md)
    MANAGER,
    clerk_flag,
    json_flag,
    open_existing,
    open_store,
    print_json,
    require_clerk_flag,
    signed_in,
    with_config,
)
from tenpo.edge.clock_skew import CLOCK_SKEW_META, parse_recorded
from tenpo.edge.config import StoreConfig, load_config
from tenpo.edge.deliveries_cli import register_edge as delivery_commands  # issue 18 §7
from tenpo.edge.inspection.cli import register_edge as inspection_commands
from tenpo.edge.jobs import scheduled_alerts
from tenpo.edge.loyalty import standing  # issue 17 (H7)
from tenpo.edge.membership.cli import register_edge as membership_commands
from tenpo.edge.membership.edits_cli import register as register_member_update
from tenpo.edge.outbox import get_meta
from tenpo.edge.printer.cli import register_edge as printer_commands
from tenpo.edge.reservations import store as reservations_store  # issue 18
from tenpo.edge.reservations.cli import register_edge as reservation_commands
from tenpo.edge.transfers_cli import register_edge as transfer_commands
from tenpo.shared.logs import add_log_level_flag, configure_logging
from tenpo.shared.pki_crl import cert_warn_days, certificate_status
from tenpo.shared.terminal import unguarded


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    edge = subparsers.add_parser("edge", help="the store agent and its replica")
    commands = edge.add_subparsers(dest="edge_command", metavar="COMMAND")
    commands.required = True

    init = with_config(commands.add_parser("init", help="create the replica and the store key pair if missing"))
    init.set_defaults(func=cmd_init)

    run = with_config(commands.add_parser("run", help="run the store agent (sync link, readers, beacons)"))
    add_log_level_flag(run)
    run.set_defaults(func=cmd_run)

    member = commands.add_parser("member", help="members in the store replica")
    member_commands = member.add_subparsers(dest="member_command", metavar="COMMAND")
    member_commands.required = True
    add = clerk_flag(with_config(member_commands.add_parser("add", help="register a member (offline, provisional id)")))
    add.add_argument("--name", required=True)
    add.add_argument("--kana")
    add.add_argument("--phone")
    add.add_argument("--email")
    add.add_argument("--card")
    add.add_argument("--line-user-id")
    add.set_defaults(func=cmd_member_add)
    find = clerk_flag(with_config(member_commands.add_parser(
        "find", help="find by card, phone, email or name/kana prefix (audited: each member shown is a profile view)")))
    find.add_argument("query")
    find.add_argument("--limit", type=_positive, default=20, metavar="N", help="show at most N members (default 20)")
    json_flag(find)
    find.set_defaults(func=cmd_member_find)
    register_member_update(member_commands)  # issue 18 (H9): the clerk's profile edit -> member.updated

    stock = with_config(commands.add_parser("stock", help="stock here and at other stores"))
    stock.add_argument("--sku")
    json_flag(stock)
    stock.set_defaults(func=cmd_stock)
    stock_commands = stock.add_subparsers(dest="stock_command", metavar="COMMAND")
    adjust = clerk_flag(with_config(stock_commands.add_parser("adjust", help="adjust this store's stock (+/-); a manager")),
                        MANAGER)  # fmt: skip
    adjust.add_argument("--sku", required=True)
    adjust.add_argument("--qty", required=True, type=int)
    adjust.add_argument("--reason", required=True)
    adjust.add_argument("--location", default="floor")
    adjust.set_defaults(func=cmd_stock_adjust)

    status = with_config(commands.add_parser("status", help="sync link and outbox state"))
    json_flag(status)
    status.add_argument("--check", action="store_true", help="check the database's integrity first (quick_check)")
    status.add_argument("--cert-warn-days", type=int, default=None, metavar="N",  # issue 14
                        help="warn when the store certificate expires within N days (default $TENPO_CERT_WARN_DAYS or 30)")
    status.set_defaults(func=cmd_status)

    check = with_config(commands.add_parser("check", help="check the replica's integrity (SQLite quick_check)"))
    check.set_defaults(func=cmd_check)

    backup = with_config(commands.add_parser("backup", help="online backup of the replica (checkout keeps running)"))
    backup.add_argument("--to", metavar="DIR", help="backup directory (default: [backup] dir in the config)")
    backup.add_argument("--keep", type=_positive, metavar="N", help="keep the newest N backups (default: [backup] keep)")
    json_flag(backup)
    backup.set_defaults(func=cmd_backup)

    restore = with_config(commands.add_parser("restore", help="replace the replica with a backup (agent stopped)"))
    restore.add_argument("file", metavar="FILE", help="a backup made by `tenpo edge backup`")
    json_flag(restore)
    restore.set_defaults(func=cmd_restore)

    for add_commands in (checkout_commands, inspection_commands, clerk_commands, membership_commands,
                         printer_commands, reservation_commands, transfer_commands, delivery_commands):
        add_commands(commands)
    audit_commands(commands)  # `edge audit verify` (issue 14, H4)


# ---------------------------------------------------------------------------- handlers


def cmd_init(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    db = init_store(config)
    db.conn.close()
    print(config.public_key)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging(args.log_level, fields={"store_id": config.store_id})  # journal: TENPO_STORE_ID
    asyncio.run(run_agent(config, on_snapshot_progress=_progress_printer()))
    return 0


def _progress_printer() -> Callable[[int, int], None]:
    """A progress bar for the bootstrap snapshot on a terminal, a log line per 10% otherwise."""
    if sys.stderr.isatty():
        # Only a terminal gets the bar: the agent under systemd does not pay for importing rich.
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        progress = Progress("bootstrap", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=False,
                            console=Console(file=unguarded(sys.stderr)))  # its escapes are its own  # fmt: skip
        task = progress.add_task("snapshot", total=None)
        progress.start()

        def show(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)
            if done >= total:
                progress.stop()

        return show
    last_decile = [-1]

    def log_line(done: int, total: int) -> None:
        decile = done * 10 // max(total, 1)
        if decile != last_decile[0]:
            last_decile[0] = decile
            logging.getLogger("tenpo.edge.bootstrap").info("bootstrap %d/%d rows (%d%%)", done, total, decile * 10)

    return log_line


def cmd_member_add(args: argparse.Namespace) -> int:
    require_clerk_flag(args, "registering a member")
    config, db = open_store(args)
    clerk = signed_in(args, db, "registering a member")
    member_id = replica.register_member(
        db, config.store_id, name=args.name, kana=args.kana, phone=args.phone, email=args.email,
        card_no=args.card, line_user_id=args.line_user_id,
    )  # fmt: skip
    record_action(db, clerk, "edge member add", member_id)
    print(member_id)
    return 0


def cmd_member_find(args: argparse.Namespace) -> int:
    require_clerk_flag(args, "finding members (personal data)")
    _config, db = open_store(args)
    clerk = signed_in(args, db, "finding members (personal data)")
    members = replica.find_members(db, args.query, limit=args.limit)
    for m in members:  # each member shown is a profile view: audited, and member.viewed goes to HQ
        record_member_access(db, clerk.clerk_id, m.member_id, "view")
    more = replica.count_members(db, args.query) - len(members) if len(members) == args.limit else 0
    # With --json the list keeps its shape for scripts; the note goes to stderr.
    note = f"{more} more match {args.query!r}: narrow the search or raise --limit" if more else None
    held = {m.member_id: standing(db.conn, m.member_id, m.points) for m in members}  # issue 17 (H7): loyalty
    if args.json:
        print_json([{**m.as_json(), "loyalty": held[m.member_id].as_json()} for m in members])  # loyalty: rank, lots
        if note:
            print(note, file=sys.stderr)
        return 0
    if not members:
        print(f"no member matches {args.query!r}")
        return 1
    for m in members:
        print(f"{m.member_id}  {m.name or ''}  {m.kana or ''}  card {m.card_no or '-'}  {m.phone or '-'}  "
              f"{m.email or '-'}  {m.points} pt")  # fmt: skip
        if held[m.member_id].rank or held[m.member_id].lots:  # issue 17 (H7): loyalty, from HQ's last change
            print(f"    {held[m.member_id].summary()}")  # stdout's guard neutralises escapes
    if note:
        print(f"({note})")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def cmd_stock(args: argparse.Namespace) -> int:
    config, db = open_store(args)
    rows = replica.stock_levels(db, config.store_id, args.sku)
    held = reservations_store.reserved_by_sku(db.conn)  # issue 18: reserved here; other stores' are counted at HQ
    if args.json:
        print_json([{"store_id": r.store_id, "sku": r.sku, "name": r.name, "on_hand": r.on_hand, "as_of": r.as_of,
                     "reserved": held.get(r.sku, 0) if r.as_of is None else 0,
                     "available": r.on_hand - (held.get(r.sku, 0) if r.as_of is None else 0)}
                     for r in rows])
        return 0
    if not rows:
        print("no stock rows" + (f" for {args.sku}" if args.sku else ""))
        return 0
    for r in rows:
        where = "here" if r.as_of is None else f"as of {_ago(r.as_of)}"
        reserved = held.get(r.sku, 0) if r.as_of is None else 0
        hold = f"  reserved {reserved}, available {r.on_hand - reserved}" if reserved else ""
        print(f"{r.store_id:<8} {r.sku:<14} {r.on_hand:>6}  {r.name}  ({where}){hold}")
    return 0


def _ago(timestamp: float) -> str:
    seconds = max(0, int(time.time() - timestamp))
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


def cmd_stock_adjust(args: argparse.Namespace) -> int:
    require_clerk_flag(args, "a stock adjustment")
    _config, db = open_store(args)
    clerk = signed_in(args, db, "a stock adjustment", Action.STOCK_ADJUST)
    # The clerk goes into the entry's reason (and so its stock.adjusted event), as the terminal writes it.
    reason = args.reason.strip()
    seq = replica.adjust_stock(db, args.sku, args.qty, f"{reason} (clerk {clerk.clerk_id})" if reason else reason,
                               location=args.location)  # fmt: skip
    record_action(db, clerk, "edge stock adjust", f"{args.sku} {args.qty:+d} event {seq}")
    print(f"adjusted {args.sku} by {args.qty:+d} (event {seq})")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    settings = backup_settings(config)
    directory = Path(args.to) if args.to else settings.directory
    result = backup_store(config.database, config.store_id, directory, args.keep or settings.keep)
    if args.json:
        print_json(result.as_json())
    else:
        print(f"backup {result.path} ({result.size} bytes, {result.seconds:.1f}s, integrity ok);"
              f" removed {len(result.removed)} old")  # fmt: skip
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    result = restore_store(config, Path(args.file))
    if args.json:
        print_json(result.as_json())
    else:
        print(f"restored {config.database} from {result.restored_from} (schema {result.schema_version});"
              f" the previous file is at {result.moved_aside or '-'}")  # fmt: skip
        print(f"new stream {result.new_stream}: {result.unsent_to_dead_letters} event(s) unacknowledged at backup time"
              " moved to the store's dead letters (HQ may already hold them)")  # fmt: skip
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    problems = _check_integrity(config)
    for problem in problems:
        print(problem)
    if problems:
        raise edge_db.damaged(config.database, problems)
    print(f"ok: {config.database}")
    return 0


def _check_integrity(config: StoreConfig) -> list[str]:
    """quick_check now, noted for `edge status` when the file can still take the note."""
    edge_db.must_exist(config.database)
    problems = edge_db.check_integrity(config.database)
    try:
        db = open_existing(config)
    except edge_db.StoreDatabaseError:
        return problems
    record_integrity(db, problems)
    db.conn.close()
    return problems


def _integrity_text(last: dict[str, Any] | None) -> str:
    if last is None:
        return "not checked yet (tenpo edge check)"
    verdict = "ok" if last["ok"] else f"DAMAGED: {'; '.join(last['problems'][:3])}"
    return f"{verdict} (checked {_ago(last['at'])})"


def _skew_text(recorded: dict[str, Any] | None) -> str:
    if recorded is None:
        return "unknown (no ack from HQ yet)"
    ahead = "ahead of" if recorded["skew_s"] >= 0 else "behind"
    return f"HQ's clock is {abs(recorded['skew_s']):.3f} s {ahead} ours (measured {_ago(recorded['at'])})"


def _cert_text(cert: dict[str, Any] | None) -> str:
    if cert is None:
        return "none (plain MQTT)"
    if cert["not_after"] is None:
        return f"{cert['path']}: cannot be read"
    return f"expires {time.strftime('%Y-%m-%d', time.gmtime(cert['not_after']))} ({cert['days_left']:.0f} days)"


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.check:
        problems = _check_integrity(config)
        if problems:
            raise edge_db.damaged(config.database, problems)
    db = open_existing(config)
    status: dict[str, Any] = {"store_id": config.store_id, "store_name": config.name}
    integrity = get_meta(db.conn, INTEGRITY_META_KEY)
    status["integrity"] = json.loads(integrity) if integrity else None  # the last quick_check
    link = replica.agent_link(db.conn)
    status["connected"] = link.connected
    status["agent_running"] = link.running
    status.update(replica.sync_status(db))
    status["bootstrapped"] = get_meta(db.conn, "bootstrapped") == "1"
    # issue 19 §5: a bootstrap's name-search tokens are moved after it (edge/bootstrap_bulk.py)
    status["name_search_ready"] = not bootstrap_bulk.pending(db.conn)
    behind = get_meta(db.conn, "alert.hq_behind")
    lost = json.loads(behind) if behind else None
    status["alerts"] = [f"HQ lost acknowledged events {lost['hq_hwm'] + 1}..{lost['acked']}"] if lost else []
    status["alerts"] += scheduled_alerts(db.conn)
    warn_days = args.cert_warn_days if args.cert_warn_days is not None else cert_warn_days()  # issue 14
    status["certificate"], cert_alert = certificate_status(config.tls.cert, time.time(), warn_days)
    status["alerts"] += [cert_alert] if cert_alert else []
    status["last_backup"] = last_backup(db.conn)
    last_sync = get_meta(db.conn, "last_sync_at")
    status["last_sync_at"] = float(last_sync) if last_sync else None
    skew = parse_recorded(get_meta(db.conn, CLOCK_SKEW_META))
    status["clock_skew"] = asdict(skew) if skew else None  # skew_s > 0: HQ's clock is ahead of ours
    status["services"] = {
        key.removeprefix("service."): json.loads(value)
        for key, value in db.conn.execute("SELECT key, value FROM meta WHERE key LIKE 'service.%' ORDER BY key")
    }
    if args.json:
        print_json(status)
    else:
        for key, value in status.items():
            text = _integrity_text(value) if key == "integrity" else _skew_text(value) if key == "clock_skew" else value
            if key == "certificate":  # issue 14
                text = _cert_text(value)
            print(f"{key:<22} {text}")
    return 0
