"""A store's presence at HQ: its MQTT birth and will (online, offline) and its periodic status (backlog,
cursor, clock skew), written to its `stores` row for the monitor."""

from __future__ import annotations

import time
from typing import Any

from tenpo.cloud import certs
from tenpo.cloud.db import Central
from tenpo.shared import hlc


def record_birth(db: Central, store_id: str, body: Any, online: bool) -> bool:
    """Birth or Will; a Will only counts if its bdseq matches the newest birth (late Wills are stale)."""
    now = time.time()
    with db.transaction():
        if online:
            cur = db.execute(
                "UPDATE stores SET online = 1, bdseq = ?, last_seen = ?, agent_version = ?, schema_version = ?,"
                " backlog = ?, cursor = ?, last_hlc = ?, skew_ms = ? WHERE store_id = ? AND bdseq <= ?",
                (body.bdseq, now, body.agent_version, body.schema_version, body.backlog, body.cursor, body.hlc,
                 hlc.skew_millis(body.hlc, int(now * 1000)), store_id, body.bdseq),
            )  # fmt: skip
            # issue 14: the store's certificate expiry, for the HQ monitor's warning
            counted = cur.rowcount
            if counted and isinstance(getattr(body, "cert_not_after", None), (int, float)):
                certs.record_certificate(db, store_id, body.cert_not_after, now)
            return bool(counted)
        else:
            cur = db.execute(
                "UPDATE stores SET online = 0, last_seen = ? WHERE store_id = ? AND bdseq = ?",
                (now, store_id, body.bdseq),
            )
        return bool(cur.rowcount)


def record_status(db: Central, store_id: str, body: Any) -> None:
    now = time.time()
    with db.transaction():
        db.execute(
            "UPDATE stores SET last_seen = ?, backlog = ?, oldest_pending_age_s = ?, cursor = ?, last_hlc = ?,"
            " skew_ms = ? WHERE store_id = ?",
            (now, body.backlog, body.oldest_pending_age_s, body.cursor, body.hlc,
             hlc.skew_millis(body.hlc, int(now * 1000)), store_id),
        )  # fmt: skip
