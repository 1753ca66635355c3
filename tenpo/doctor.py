"""`tenpo doctor`: is this store box (``--config``) or HQ (``--db``/``--broker``) healthy, and if not, why?

Each check is green, yellow (look at it soon) or red (act now: exit status 1). What is not configured
(no readers, no TLS, no beacons) or not due yet (the first nightly backup) is never red. Checks only
read: no database is created or migrated, no file is changed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import serial
from paho.mqtt.enums import CallbackAPIVersion

from tenpo.cloud.cli_support import DEFAULT_DB
from tenpo.cloud.db import Central
from tenpo.edge import db as edge_db
from tenpo.edge.backup import backup_settings, last_backup
from tenpo.edge.ble.service import beacon_settings
from tenpo.edge.clock_skew import CLOCK_SKEW_META, RecordedSkew, parse_recorded
from tenpo.edge.config import StoreConfig, load_config
from tenpo.edge.inspection.config import dock_settings
from tenpo.edge.jobs import certificate_days_left, job_settings
from tenpo.edge.outbox import backlog, get_meta
from tenpo.edge.replica import agent_link
from tenpo.edge.rfid.profile import ReaderProfile
from tenpo.edge.rfid.registry import driver_for, load_profile
from tenpo.edge.scheduler import last_run
from tenpo.shared.errors import ConfigError
from tenpo.shared.mqtt import BrokerUrl, TlsFiles, parse_broker_url, tls_context
from tenpo.shared.terminal import unguarded

GREEN, YELLOW, RED = "green", "yellow", "red"
BLUETOOTH_SYSFS = Path("/sys/class/bluetooth")
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")  # systemd-timesyncd touches it once in sync
BROKER_TIMEOUT_S = 5.0
CLOCK_GREEN_S, CLOCK_RED_S = 2.0, 30.0  # skew against HQ: green under, red from
READER_REPLY_S = 1.0  # a module answers its version query within milliseconds
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str
    detail: str


# ---------------------------------------------------------------------------- probes (thin adapters)


@dataclass(frozen=True, slots=True)
class BrokerProbe:
    ok: bool
    detail: str


def probe_broker(broker: BrokerUrl, tls: TlsFiles, timeout: float = BROKER_TIMEOUT_S) -> BrokerProbe:
    """A real MQTT connect (TLS verified) under a throwaway client id."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tenpo-doctor-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5, reconnect_on_failure=False)  # fmt: skip
    client.connect_timeout = timeout
    answered = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        outcome["reason"] = reason
        answered.set()

    client.on_connect = on_connect
    try:
        if broker.tls:
            client.tls_set_context(tls_context(tls))
        client.connect(broker.host, broker.port, keepalive=15, clean_start=True)
    except ConfigError as exc:
        return BrokerProbe(False, str(exc))
    except OSError as exc:  # refused, unreachable, a TLS handshake that fails verification
        return BrokerProbe(False, f"{broker}: cannot connect ({exc})")
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return BrokerProbe(False, f"{broker}: no answer within {timeout:.0f}s")
        if outcome["reason"].is_failure:
            return BrokerProbe(False, f"{broker}: refused the connection ({outcome['reason']})")
        return BrokerProbe(True, f"{broker}: connected" + (" (TLS verified)" if broker.tls else ""))
    finally:
        client.disconnect()
        client.loop_stop()


def probe_serial_port(port: str) -> str | None:
    """None if the port opens; else why not (absent, busy, no permission)."""
    if not Path(port).exists():
        return f"{port} is not present (unplugged? check the udev rule)"
    try:
        serial.Serial(port, timeout=0.1).close()
    except (serial.SerialException, OSError) as exc:
        return f"{port} cannot be opened ({exc})"
    return None


def probe_reader(profile: ReaderProfile, timeout: float = READER_REPLY_S) -> bool | None:
    """Ask the module the first question of its driver's configuration (the version, for every protocol
    so far: harmless) and wait for a reply the driver's decoder recognises. None: the protocol takes no
    commands (plain ASCII readers only stream tags, and an idle one says nothing)."""
    driver = driver_for(profile.protocol)
    question = next((step.command for step in driver.configuration(profile) if step.awaits_reply), None)
    if question is None:
        return None
    decoder = driver.decoder(profile)
    with serial.serial_for_url(profile.port, baudrate=profile.baud, timeout=0.1) as port:
        port.reset_input_buffer()
        port.write(question)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(driver.answers(question, event) for event in decoder.feed(port.read(port.in_waiting or 1))):
                return True
    return False


# ---------------------------------------------------------------------------- verdicts (pure)


def disk_check(path: Path, usage: Callable[[Path], Any] = shutil.disk_usage) -> Check:
    try:
        info = usage(path)
    except OSError as exc:
        return Check("disk space", RED, f"{path}: {exc}")
    free_mb, share = info.free / 2**20, info.free / info.total
    detail = f"{free_mb:,.0f} MB free ({share:.0%}) on {path}"
    status = RED if free_mb < 100 or share < 0.02 else YELLOW if free_mb < 1024 or share < 0.10 else GREEN
    return Check("disk space", status, detail)


def backup_check(record: dict[str, Any] | None, registered: dict[str, Any] | None, now: float) -> Check:
    if record is None:
        since = (registered or {}).get("since") or (registered or {}).get("last_run")
        if since is None or now - float(since) < 1.2 * DAY:
            return Check("last backup", GREEN, "none yet: the first nightly backup is not due")
        return Check("last backup", RED, "no backup although the nightly job has been due: run `tenpo edge backup`")
    age = now - float(record["at"])
    status = GREEN if age < 1.2 * DAY else YELLOW if age < 2.2 * DAY else RED
    return Check("last backup", status, f"{age / 3600:.1f} h ago: {record['path']}")


def backlog_check(count: int, oldest: float | None, limit_s: float, now: float) -> Check:
    if not count or oldest is None:
        return Check("backlog", GREEN, "every event acknowledged by HQ")
    age = now - oldest
    status = RED if age > limit_s else YELLOW if age > limit_s / 2 else GREEN
    return Check("backlog", status, f"{count} event(s) unsent, the oldest {age / 60:.0f} min old")


def clock_check(recorded: RecordedSkew | None, now: float, synchronized: bool) -> Check:
    """The skew the sync link measured against HQ's acks (see docs/protocol.md, Ack)."""
    ntp = "NTP synchronised" if synchronized else "NTP not known to be synchronised (timedatectl set-ntp true)"
    if recorded is None:
        return Check("clock", YELLOW, f"skew against HQ unknown: no ack from HQ yet; {ntp}")
    skew = abs(recorded.skew_s)
    status = GREEN if skew < CLOCK_GREEN_S else YELLOW if skew < CLOCK_RED_S else RED
    side = "ahead of" if recorded.skew_s >= 0 else "behind"
    age = max(0.0, now - recorded.at)
    when = f"{age:.0f}s ago" if age < 120 else f"{age / 60:.0f} min ago" if age < 7200 else f"{age / 3600:.0f} h ago"
    return Check("clock", status, f"HQ's clock is {skew:.1f}s {side} ours (measured {when}); {ntp}")


def cert_check(name: str, path: Path | None, warn_days: int, now: float) -> Check:
    if path is None:
        return Check(name, GREEN, "not configured")
    try:
        days = certificate_days_left(path, now)
    except (OSError, ValueError) as exc:
        return Check(name, RED, f"{path}: cannot read it ({exc})")
    status = RED if days < 0 else YELLOW if days < warn_days else GREEN
    return Check(name, status, f"{path}: {'expired' if days < 0 else 'expires in'} {abs(days):.0f} day(s)"
                 + (" ago" if days < 0 else ""))  # fmt: skip


# ---------------------------------------------------------------------------- the store


def store_checks(config_arg: str | None, now: float | None = None) -> list[Check]:
    now = time.time() if now is None else now
    try:
        config = load_config(config_arg)
        settings = job_settings(config)
        backup_settings(config)  # a wrong [backup] section would stop the nightly job: say so here
    except ConfigError as exc:
        return [Check("config", RED, str(exc))]
    checks = [Check("config", GREEN, f"{config.path}: store {config.store_id}")]
    checks.append(disk_check(config.database.parent if config.database.parent.exists() else Path("/")))
    conn = _database_checks(config, checks)
    skew: RecordedSkew | None = None
    running = False
    if conn is not None:
        try:
            count, oldest = backlog(conn)
            checks.append(backlog_check(count, oldest, settings.outbox_age_minutes * 60, now))
            checks.append(backup_check(last_backup(conn), last_run(conn, "backup"), now))
            skew = parse_recorded(get_meta(conn, CLOCK_SKEW_META))
            running = agent_link(conn).running
            checks.append(Check("agent", GREEN if running else YELLOW,
                                "running" if running else "not running (systemctl status tenpo-edge)"))  # fmt: skip
        finally:
            conn.close()
    probe = probe_broker(config.broker, config.tls)
    checks.append(Check("broker", GREEN if probe.ok else RED, probe.detail))
    checks.append(clock_check(skew, now, TIMESYNC_FLAG.exists()))
    checks.append(cert_check("TLS client certificate", config.tls.cert if config.broker.tls else None,
                             settings.cert_expiry_days, now))  # fmt: skip
    if config.broker.tls and config.tls.ca is not None:
        checks.append(cert_check("TLS CA certificate", config.tls.ca, settings.cert_expiry_days, now))
    checks += reader_checks(config, agent_running=running)
    checks.append(bluetooth_check(config))
    return checks


def _database_checks(config: StoreConfig, checks: list[Check]) -> sqlite3.Connection | None:
    """Integrity and schema version, read-only; the open connection for the next checks if usable."""
    path = config.database
    if not path.is_file():
        checks.append(Check("database", RED, f"{path} does not exist (tenpo edge init, or restore a backup)"))
        return None
    problems = edge_db.check_integrity(path)
    if problems:
        checks.append(Check("database", RED, f"{path} is damaged: {problems[0]} ({len(problems)} problem(s));"
                                             " restore a backup (tenpo edge restore)"))  # fmt: skip
        return None
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version = int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0])
    except sqlite3.Error as exc:
        conn.close()
        checks.append(Check("database", RED, f"{path}: not a tenpo replica ({exc})"))
        return None
    newest = edge_db.MIGRATIONS[-1][0]
    if version > newest:
        status, note = RED, f"schema {version} is newer than this tenpo ({newest}): upgrade tenpo"
    elif version < newest:
        status, note = YELLOW, f"schema {version}; the agent migrates it to {newest} at its next start"
    else:
        status, note = GREEN, f"schema {version}"
    checks.append(Check("database", status, f"{path}: quick_check ok, {note}"))
    return conn


def reader_checks(config: StoreConfig, agent_running: bool = False) -> list[Check]:
    try:
        profiles = dock_settings(config).readers
    except ConfigError as exc:
        return [Check("readers", RED, str(exc))]
    if not profiles:
        return [Check("readers", GREEN, "none configured")]
    checks = []
    for path in profiles:
        try:
            profile = load_profile(path)
        except ConfigError as exc:
            checks.append(Check(f"reader {path.stem}", RED, str(exc)))
            continue
        checks.append(reader_check(profile, agent_running))
    return checks


def reader_check(profile: ReaderProfile, agent_running: bool) -> Check:
    name, where = f"reader {profile.name}", f"{profile.port} ({profile.protocol})"
    problem = probe_serial_port(profile.port)
    if problem:
        return Check(name, RED, problem)
    if agent_running:  # asking now would take the agent's replies and tag reads off the line
        return Check(name, GREEN, f"{where} opens; the agent is using it, so it was not asked")
    try:
        answered = probe_reader(profile)
    except (serial.SerialException, OSError, ValueError) as exc:
        return Check(name, RED, f"{where}: {exc}")
    if answered is None:
        return Check(name, GREEN, f"{where} opens (the protocol takes no commands to ask it)")
    if answered:
        return Check(name, GREEN, f"{where} answers")
    return Check(name, RED, f"{where}: present but not answering within {READER_REPLY_S:.0f}s "
                            "(powered? the right protocol and baud rate in the profile?)")  # fmt: skip


def bluetooth_check(config: StoreConfig) -> Check:
    try:
        settings = beacon_settings(config)
    except ConfigError as exc:
        return Check("bluetooth", RED, str(exc))
    if settings is None:
        return Check("bluetooth", GREEN, "beacons not configured")
    adapters = sorted(p.name for p in BLUETOOTH_SYSFS.iterdir()) if BLUETOOTH_SYSFS.is_dir() else []
    wanted = settings[1]
    if (wanted and wanted in adapters) or (not wanted and adapters):
        return Check("bluetooth", GREEN, f"adapter {wanted or adapters[0]} present")
    which = f"adapter {wanted}" if wanted else "Bluetooth adapter"
    return Check("bluetooth", RED, f"no {which} in {BLUETOOTH_SYSFS} (is BlueZ running? rfkill unblock bluetooth)")


# ---------------------------------------------------------------------------- HQ


def hq_checks(db_url: str, broker_url: str | None, tls: TlsFiles) -> list[Check]:
    checks: list[Check] = []
    try:
        central = Central(db_url, create=False)
    except ConfigError as exc:
        return [Check("central database", RED, str(exc))]
    try:
        version = int(central.scalar("SELECT max(version) FROM schema_migrations", (), 0))
        detail = f"{central.dialect}, schema {version}"
        status = GREEN
        if central.dialect == "sqlite":
            problems = [str(r[0]) for r in central.all("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                status, detail = RED, f"damaged: {problems[0]}"
            checks.append(disk_check(Path(central.url.target).resolve().parent))
        checks.insert(0, Check("central database", status, detail))
        letters = int(central.scalar("SELECT count(*) FROM dead_letters WHERE status = 'open'", (), 0))
        checks.append(Check("dead letters", YELLOW if letters else GREEN, f"{letters} open"))
        offline = [r[0] for r in central.all("SELECT store_id FROM stores WHERE online = 0 ORDER BY store_id")]
        checks.append(Check("stores", YELLOW if offline else GREEN,
                            f"offline: {', '.join(offline[:10])}" if offline else "every registered store online"))  # fmt: skip
    finally:
        central.close()
    if broker_url:
        try:
            broker = parse_broker_url(broker_url, "--broker")
        except ConfigError as exc:
            return [*checks, Check("broker", RED, str(exc))]
        probe = probe_broker(broker, tls)
        checks.append(Check("broker", GREEN if probe.ok else RED, probe.detail))
        if broker.tls:
            checks.append(cert_check("TLS client certificate", tls.cert, 30, time.time()))
    return checks


# ---------------------------------------------------------------------------- command


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("doctor", help="check a store box (--config) or HQ (--db) and say what is wrong")
    parser.add_argument("--config", help="store config TOML (default: $TENPO_CONFIG)")
    parser.add_argument("--db", help=f"HQ: the central database (sqlite:///… or postgresql://…; e.g. {DEFAULT_DB})")
    parser.add_argument("--broker", help="HQ: the broker to try (mqtt://host:port or mqtts://…)")
    parser.add_argument("--tls-ca", type=Path, help="HQ: CA of the broker certificate")
    parser.add_argument("--tls-cert", type=Path, help="HQ: client certificate")
    parser.add_argument("--tls-key", type=Path, help="HQ: client key")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    if args.db or (args.broker and not args.config):
        checks = hq_checks(args.db or DEFAULT_DB, args.broker, TlsFiles(args.tls_ca, args.tls_cert, args.tls_key))
    else:
        checks = store_checks(args.config)
    red = any(c.status == RED for c in checks)
    if args.json:
        print(json.dumps({"ok": not red, "checks": [asdict(c) for c in checks]}, ensure_ascii=False, indent=2))
    else:
        print_table(checks)
    return 1 if red else 0


def print_table(checks: list[Check]) -> None:
    colour = sys.stdout.isatty()
    codes = {GREEN: "32", YELLOW: "33", RED: "31"}
    width = max(len(c.name) for c in checks)
    raw = unguarded(sys.stdout)  # the colour escapes are ours: past tenpo.cli's output guard
    for c in checks:
        if colour:
            sys.stdout.flush()
            raw.write(f"\033[{codes[c.status]}m{c.status:<6}\033[0m")
        else:
            sys.stdout.write(f"{c.status:<6}")
        print(f"  {c.name:<{width}}  {c.detail}")
