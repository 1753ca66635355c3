"""`tenpo cloud ...`: HQ-side commands. Thin: parse, call the central store, print."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from tenpo.cloud import admin
from tenpo.cloud.aggregator import Aggregator
from tenpo.cloud.analytics.cli import register_cloud as analytics_commands  # issue 17 (H6)
from tenpo.cloud.asn.cli import register_cloud as asn_commands
from tenpo.cloud.audit.cli import register_cloud as audit_commands
from tenpo.cloud.authority_cli import register_cloud as authority_commands  # issue 14 (H1)
from tenpo.cloud.backup import backup_central
from tenpo.cloud.cli_support import db_flag, print_json
from tenpo.cloud.db import Central
from tenpo.cloud.history import register_cloud as history_commands
from tenpo.cloud.loyalty.cli import register_cloud as loyalty_commands  # issue 17 (H7)
from tenpo.cloud.members.cli import register_cloud as member_commands
from tenpo.cloud.operators.cli import guard_commands
from tenpo.cloud.operators.cli import register_cloud as operator_commands
from tenpo.cloud.operators.dead_letters import register_cloud as dead_letter_commands
from tenpo.cloud.sales.cli import register_cloud as sales_commands
from tenpo.cloud.scheduler import EVENTS_DAYS, HqRetention, start_hq_scheduler
from tenpo.cloud.status import format_age, format_skew, status_report
from tenpo.cloud.visits.cli import register_cloud as visit_commands
from tenpo.shared.errors import UserError
from tenpo.shared.logs import add_log_level_flag, configure_logging
from tenpo.shared.mqtt import TlsFiles, parse_broker_url


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cloud = subparsers.add_parser("cloud", help="the HQ aggregator and its central store")
    commands = cloud.add_subparsers(dest="cloud_command", metavar="COMMAND")
    commands.required = True

    run = db_flag(commands.add_parser("run", help="run an aggregator (several may share one PostgreSQL)"))
    run.add_argument("--broker", default=os.environ.get("TENPO_BROKER", "mqtt://127.0.0.1:1883"))
    run.add_argument("--client-id", help="MQTT client id (default: unique per process)")
    run.add_argument("--tls-ca", type=Path, help="CA that signed the broker certificate (mqtts://)")
    run.add_argument("--tls-cert", type=Path, help="this aggregator's client certificate")
    run.add_argument("--tls-key", type=Path, help="its private key")
    run.add_argument("--retention-days", type=int, default=EVENTS_DAYS, metavar="N",
                     help="delete applied events older than N days, nightly (default %(default)s)")
    add_log_level_flag(run)
    run.set_defaults(func=cmd_run)

    store = commands.add_parser("store", help="registered stores")
    store_commands = store.add_subparsers(dest="store_command", metavar="COMMAND")
    store_commands.required = True
    add = db_flag(store_commands.add_parser("add", help="register a store and its public key"))
    add.add_argument("store_id")
    add.add_argument("--public-key", required=True, type=Path, help="the store's .pub file (PEM)")
    add.add_argument("--name")
    add.set_defaults(func=cmd_store_add)

    product = commands.add_parser("product", help="the product list sent to every store")
    product_commands = product.add_subparsers(dest="product_command", metavar="COMMAND")
    product_commands.required = True
    imp = db_flag(product_commands.add_parser("import", help="import products from CSV (sku,jan,name,price,tax_class)"))
    imp.add_argument("file", type=Path)
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(func=cmd_product_import)

    status = db_flag(commands.add_parser("status", help="every store's link and the totals"))
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    backup = db_flag(commands.add_parser("backup", help="online backup of a SQLite HQ database (rotated)"))
    backup.add_argument("--to", required=True, type=Path, metavar="DIR", help="backup directory (created 0700)")
    backup.add_argument("--keep", type=int, default=7, metavar="N", help="keep the newest N backups (default 7)")
    backup.add_argument("--json", action="store_true")
    backup.set_defaults(func=cmd_backup)

    for add_commands in (sales_commands, member_commands, asn_commands, visit_commands, history_commands):
        add_commands(commands)
    loyalty_commands(commands)  # issue 17 (H7)
    analytics_commands(commands)  # issue 17 (H6): `cloud analytics rfm|basket|cohorts|ltv|recommend|export|refresh`
    audit_commands(commands)  # issue 14 (H4): `cloud audit verify|list`
    authority_commands(commands)  # issue 14 (H1): `cloud authority list|show|set` (docs/authority.md)
    operator_commands(commands)  # issue 14 (H4): `cloud operator ...`, `cloud dead-letters ...`
    dead_letter_commands(commands)
    guard_commands(commands)  # last: --operator on every command that changes things (cloud/operators/cli.py)


def cmd_run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    tls = TlsFiles(args.tls_ca, args.tls_cert, args.tls_key)
    aggregator = Aggregator(args.db, parse_broker_url(args.broker, "--broker"), tls=tls, client_id=args.client_id)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.retention_days < 1:
        raise UserError(f"--retention-days {args.retention_days}: must be at least 1")
    # Retention beside the aggregator, on its own connection (cloud/scheduler.py says what it deletes).
    retention = start_hq_scheduler(args.db, HqRetention(events_days=args.retention_days))
    try:
        aggregator.run(stop)
    finally:
        retention.shutdown(wait=False)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    if args.keep < 1:
        raise UserError(f"--keep {args.keep}: must be at least 1")
    path, removed = backup_central(args.db, args.to, args.keep)
    if args.json:
        print_json({"path": str(path), "size": path.stat().st_size, "removed": [str(p) for p in removed]})
    else:
        print(f"backup {path} ({path.stat().st_size} bytes, integrity ok); removed {len(removed)} old")
    return 0


def cmd_store_add(args: argparse.Namespace) -> int:
    try:
        pem = args.public_key.read_text()
    except OSError as exc:
        raise UserError(f"--public-key {args.public_key}: cannot read ({exc.strerror})") from None
    created = admin.add_store(Central(args.db), args.store_id, pem, args.name)
    print(f"store {args.store_id} {'registered' if created else 'key updated'}")
    return 0


def cmd_product_import(args: argparse.Namespace) -> int:
    report = admin.import_products(Central(args.db), args.file)
    if args.json:
        print_json({"created": report.created, "updated": report.updated, "unchanged": report.unchanged,
                     "rejected": [{"line": line, "reason": reason} for line, reason in report.rejected]})  # fmt: skip
    else:
        print(f"products: {report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
              f"{len(report.rejected)} rejected")  # fmt: skip
        for _line, reason in report.rejected:
            print(f"  rejected {reason}", file=sys.stderr)
    return 1 if report.rejected else 0  # the good rows are imported; the bad ones need the user


def cmd_status(args: argparse.Namespace) -> int:
    report = status_report(Central(args.db, create=False))
    if args.json:
        print_json(report)
        return 0
    print(f"{'store':<10} {'online':<7} {'seen':>5} {'applied':>8} {'events':>8} {'backlog':>8} {'dead':>5} {'lag s':>8}"
          f" {'skew':>6}")  # fmt: skip
    for s in report["stores"]:
        lag = "-" if s["lag_s"] is None else f"{s['lag_s']:.1f}"
        print(f"{s['store_id']:<10} {'yes' if s['online'] else 'NO':<7} {format_age(s['seen_age_s']):>5} "
              f"{s['last_applied_seq']:>8} {s['events_applied']:>8} {s['backlog'] if s['backlog'] is not None else '-':>8} "
              f"{s['dead_letters']:>5} {lag:>8} {format_skew(s['skew_ms']):>6}")  # fmt: skip
    t = report["totals"]
    print(f"{t['online']}/{t['stores']} online, {t['events_applied']} events applied, {t['dead_letters']} dead letters")
    return 0
