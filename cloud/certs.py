"""Cloud migration 15 (issue 14): what HQ knows about each store's client certificate, and how far
ahead it has issued members' rotating beacon ids.

- ``store_certificates``: the expiry of the certificate each store connects with, as the store
  reported it in its birth message (tenpo.shared.protocol.Birth.cert_not_after); the HQ monitor warns
  when one expires within ``cert_warn_days`` (TENPO_CERT_WARN_DAYS, default 30).
- ``beacon_issue``: per member, the last id window HQ has put in the feed (tenpo.cloud.beacons); the
  scheduled job tops up the members whose ids end within 12 hours.
- member records already in the change feed lose their ``beacon_secret``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenpo.cloud.db_types import column_types
from tenpo.shared.pki_crl import cert_warn_days

if TYPE_CHECKING:
    from tenpo.cloud.db import Central

def statements(db: Central) -> list[str]:
    t = column_types(db.dialect)
    return [
        f"""CREATE TABLE store_certificates (
            store_id TEXT PRIMARY KEY,
            not_after {t['real']} NOT NULL,      -- unix seconds
            reported_at {t['real']} NOT NULL
        )""",
        f"""CREATE TABLE beacon_issue (
            name TEXT PRIMARY KEY,                -- a member id
            until_window {t['int']} NOT NULL
        )""",
        # Secrets recorded in the feed before this version: a store catching up from an old cursor would
        # be sent them again. The feed's history keeps the member records without them.
        "UPDATE changes SET data = "
        + ("(data::jsonb - 'beacon_secret')::text" if db.dialect == "postgresql" else "json_remove(data, '$.beacon_secret')")
        + " WHERE kind = 'member.upsert' AND data LIKE '%beacon_secret%'",
    ]


def record_certificate(db: Central, store_id: str, not_after: float, now: float) -> None:
    """Inside the caller's transaction (the birth's)."""
    db.execute(
        "INSERT INTO store_certificates(store_id, not_after, reported_at) VALUES (?, ?, ?)"
        " ON CONFLICT (store_id) DO UPDATE SET not_after = excluded.not_after, reported_at = excluded.reported_at",
        (store_id, float(not_after), now),
    )


def expiring(db: Central, now: float, days: int | None = None) -> list[tuple[str, float]]:
    """(store id, days left) for certificates expiring within ``days`` (or expired), soonest first."""
    limit = cert_warn_days() if days is None else days
    rows = db.all(
        "SELECT store_id, not_after FROM store_certificates WHERE not_after <= ? ORDER BY not_after, store_id",
        (now + limit * 86400.0,),
    )
    return [(store_id, (float(not_after) - now) / 86400.0) for store_id, not_after in rows]


def expiry_text(items: list[tuple[str, float]], shown: int = 3) -> str:
    """"certificate S001 expires in 12d" (or "expired"), at most ``shown`` stores then "+N"."""
    parts = [f"{store_id} {'expired' if left < 0 else f'in {int(left)}d'}" for store_id, left in items[:shown]]
    more = f" +{len(items) - shown}" if len(items) > shown else ""
    return f"certificate expiring: {', '.join(parts)}{more}" if items else ""
