"""The store agent's scheduled jobs (edge/scheduler.py runs them): what each does, given a clock.

Every job takes ``now`` (unix seconds) so a test can run it at any moment. Jobs that write use short
transactions on the connection they are given; the backup runs in a worker thread with its own
connections (tenpo.edge.backup), never the agent's.

Settings in the store TOML, with their defaults:

``[retention]`` ``beacon_visits_days = 90`` (visits, zone stays, coupons), ``replay_inbox_days = 7``
(lines fed by `tenpo ble replay`), ``inspection_reports_days = 365`` (decided inspections and their
report files), ``dead_letters_days = 90``. Raw RFID reads are never stored (an inspection keeps counts).

``[alarms]`` ``outbox_age_minutes = 60`` (warn when the oldest unsent event is older),
``cert_expiry_days = 30`` (warn this long before the broker client certificate expires).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from tenpo.edge.ble import schema as ble_schema
from tenpo.edge.config import StoreConfig
from tenpo.edge.outbox import append, backlog, set_meta
from tenpo.shared.errors import ConfigError
from tenpo.shared.events import SnapshotLevel, StockSnapshot
from tenpo.shared.ids import is_id

log = logging.getLogger(__name__)

OUTBOX_ALERT_KEY = "alert.outbox_age"
CERT_ALERT_KEY = "alert.cert_expiry"
SNAPSHOT_PART = 1000  # levels per stock.snapshot event (the catalogue's bound)
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class JobSettings:
    beacon_visits_days: int = 90
    replay_inbox_days: int = 7
    inspection_reports_days: int = 365
    dead_letters_days: int = 90
    outbox_age_minutes: int = 60
    cert_expiry_days: int = 30


_SECTIONS = {
    "retention": ("beacon_visits_days", "replay_inbox_days", "inspection_reports_days", "dead_letters_days"),
    "alarms": ("outbox_age_minutes", "cert_expiry_days"),
}


def job_settings(config: StoreConfig) -> JobSettings:
    values: dict[str, int] = {}
    for section_name, keys in _SECTIONS.items():
        section = config.section(section_name)
        for key, value in section.items():
            if key not in keys:
                raise ConfigError(f"config {config.path}: {section_name}.{key}: unknown setting")
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
                raise ConfigError(f"config {config.path}: {section_name}.{key}: must be a whole number >= 1, got {value!r}")
            values[key] = value
    return JobSettings(**values)


# ---------------------------------------------------------------------------- retention


def purge(conn: sqlite3.Connection, settings: JobSettings, now: float, reports_dir: Path | None) -> dict[str, int]:
    """Delete what is past its retention period (call inside a transaction); report files after commit."""
    deleted = {"beacon_rows": ble_schema.prune(conn, now, settings.beacon_visits_days)}
    deleted["replay_lines"] = conn.execute(
        "DELETE FROM ble_inbox WHERE created_at < ?", (now - settings.replay_inbox_days * DAY,)
    ).rowcount
    deleted["dead_letters"] = conn.execute(
        "DELETE FROM dead_letters WHERE created_at < ?", (now - settings.dead_letters_days * DAY,)
    ).rowcount
    old = [row[0] for row in conn.execute(
        "SELECT inspection_id FROM inspections WHERE status != 'pending' AND closed_at < ?",
        (now - settings.inspection_reports_days * DAY,),
    )]  # fmt: skip
    conn.executemany("DELETE FROM inspections WHERE inspection_id = ?", [(i,) for i in old])
    deleted["inspections"] = len(old)
    deleted["report_files"] = 0
    if reports_dir is not None:
        for inspection_id in filter(is_id, old):  # an id that is not one never names a file to delete
            for suffix in (".txt", ".json", ".epcis.jsonld"):
                path = reports_dir / f"{inspection_id}{suffix}"
                if path.exists():
                    path.unlink()
                    deleted["report_files"] += 1
    return deleted


# ---------------------------------------------------------------------------- alarms


def outbox_age_alarm(conn: sqlite3.Connection, settings: JobSettings, now: float) -> dict[str, Any] | None:
    """Raise (or clear) the flag `tenpo edge status` shows when the oldest unsent event is too old."""
    count, oldest = backlog(conn)
    limit_s = settings.outbox_age_minutes * 60
    alert = None
    if oldest is not None and now - oldest > limit_s:
        alert = {"pending": count, "oldest_age_s": round(now - oldest), "limit_s": limit_s, "at": now}
        log.warning("outbox: %d event(s) unsent, the oldest for %.0f min (alarm at %d min): is the link to HQ down?",
                    count, (now - oldest) / 60, settings.outbox_age_minutes)  # fmt: skip
    set_meta(conn, OUTBOX_ALERT_KEY, json.dumps(alert) if alert else None)
    return alert


def certificate_days_left(path: Path, now: float) -> float:
    """Days until the PEM certificate at ``path`` expires (negative: expired)."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return (cert.not_valid_after_utc.timestamp() - now) / DAY


def cert_expiry_alarm(conn: sqlite3.Connection, cert: Path | None, settings: JobSettings, now: float) -> dict[str, Any] | None:
    if cert is None:
        set_meta(conn, CERT_ALERT_KEY, None)
        return None
    try:
        days = certificate_days_left(cert, now)
    except (OSError, ValueError) as exc:
        alert: dict[str, Any] | None = {"cert": str(cert), "error": str(exc), "at": now}
        log.warning("broker client certificate %s cannot be read: %s", cert, exc)
    else:
        alert = None
        if days < settings.cert_expiry_days:
            alert = {"cert": str(cert), "days_left": round(days, 1), "at": now}
            log.warning("broker client certificate %s expires in %.0f day(s): issue a new one (tenpo provision)", cert, days)
    set_meta(conn, CERT_ALERT_KEY, json.dumps(alert) if alert else None)
    return alert


# ---------------------------------------------------------------------------- stock snapshot


def append_stock_snapshot(conn: sqlite3.Connection, now: float) -> int:
    """The store's own levels as stock.snapshot events (call inside a transaction); the number of parts."""
    rows = conn.execute(
        "SELECT sku, location, sum(delta) FROM stock_ledger GROUP BY sku, location ORDER BY sku, location"
    ).fetchall()
    levels = [SnapshotLevel(sku=sku, location=location, on_hand=int(total)) for sku, location, total in rows]
    parts = max(1, -(-len(levels) // SNAPSHOT_PART))
    for part in range(parts):
        chunk = levels[part * SNAPSHOT_PART : (part + 1) * SNAPSHOT_PART]
        append(conn, StockSnapshot(taken_at=now, part=part + 1, parts=parts, levels=chunk))
    return parts


def scheduled_alerts(conn: sqlite3.Connection) -> list[str]:
    """The alarms the jobs raised, as `tenpo edge status` lists them."""
    alerts = []
    outbox = conn.execute("SELECT value FROM meta WHERE key = ?", (OUTBOX_ALERT_KEY,)).fetchone()
    if outbox:
        age = json.loads(outbox[0])
        alerts.append(f"outbox: {age['pending']} event(s) unsent, the oldest for {age['oldest_age_s'] // 60} min")
    cert = conn.execute("SELECT value FROM meta WHERE key = ?", (CERT_ALERT_KEY,)).fetchone()
    if cert:
        info = json.loads(cert[0])
        detail = f"expires in {info['days_left']} day(s)" if "days_left" in info else f"unreadable ({info['error']})"
        alerts.append(f"broker client certificate {info['cert']} {detail}")
    return alerts


def wall_clock() -> float:
    return time.time()
