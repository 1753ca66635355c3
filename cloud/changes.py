"""What HQ records beside an event's own rows: the change feed stores follow, the audit log, and the
member record the feed carries.

Below ``apply`` and every area: the applier, the area stores (members, sales conflicts, ASN) and the
operator commands all write here, so none of them has to import another to record a change.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from typing import Any

from tenpo.cloud.audit.chain import actor_name, seal
from tenpo.cloud.beacons import without_secrets
from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple
from tenpo.shared.changes import check_change


def audit(db: Central, actor: str, action: str, subject: str | None, detail: dict[str, Any]) -> None:
    """The one way to write HQ's audit log: the row is chained (hashed, tenpo.cloud.audit.chain) at commit,
    and a generic actor becomes the operator signed in for this command, if any (issue 14)."""
    db.execute(
        "INSERT INTO audit_log(actor, action, subject, detail, at) VALUES (?, ?, ?, ?, ?)",
        (actor_name(actor), action, subject, json.dumps(detail, ensure_ascii=False), time.time()),
    )
    db.before_commit(seal)


# ---------------------------------------------------------------------------- change feed


def allocate_change_seqs(db: Central, count: int) -> int:
    """Reserve ``count`` change numbers; returns the first. The counter row lock (PostgreSQL) is held
    to commit, so changes become visible in sequence order and a store never skips one."""
    last = int(db.scalar("UPDATE counters SET value = value + ? WHERE name = 'change' RETURNING value", (count,)))
    return last - count + 1


_DATA_JSON = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps's text, without a new encoder per call


def record_changes(db: Central, changes: list[ChangeTuple], now: float) -> list[int]:
    """Append (kind, key, store, data) to the feed; returns their seqs. Call late in the transaction."""
    if not changes:
        return []
    asked = len(changes)
    changes = without_secrets(db, changes, now)  # issue 14: ids, never beacon secrets, in the feed
    first = allocate_change_seqs(db, len(changes))
    seqs = list(range(first, first + len(changes)))
    rows = []
    for seq, (kind, key, store, data) in zip(seqs, changes):
        if "version" in data:
            data = {**data, "version": seq}
        check_change(kind, data)  # the store decodes it with the same Struct (tenpo.shared.changes)
        rows.append((seq, kind, key, store, _DATA_JSON(data), now))
    db.executemany("INSERT INTO changes(seq, kind, key, store_id, data, created_at) VALUES (?, ?, ?, ?, ?, ?)", rows)
    return seqs[:asked]


# ---------------------------------------------------------------------------- member records


MEMBER_COLUMNS = ("member_id", "name", "kana", "phone", "email", "card_no", "line_user_id", "beacon_secret",
                  "consent", "custom", "home_store", "version")  # fmt: skip


def member_record(db: Central, member_id: str) -> dict[str, Any] | None:
    row = db.one(f"SELECT {', '.join(MEMBER_COLUMNS)} FROM members WHERE member_id = ? AND erased = 0", (member_id,))
    return None if row is None else _member_record(row)


def member_records(db: Central, member_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """member_record for many members at once (an import's chunk); erased and unknown ids are left out."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(member_ids), 900):  # well below either database's parameter limit
        part = member_ids[start : start + 900]
        marks = ", ".join("?" for _ in part)
        for row in db.all(f"SELECT {', '.join(MEMBER_COLUMNS)} FROM members WHERE member_id IN ({marks}) AND erased = 0",
                          part):  # fmt: skip
            found[row[0]] = _member_record(row)
    return found


def _member_record(row: Sequence[Any]) -> dict[str, Any]:
    record = dict(zip(MEMBER_COLUMNS, row))
    record["consent"] = json.loads(record["consent"] or "{}")
    record["custom"] = json.loads(record["custom"] or "{}")
    return record


def new_beacon_secret() -> str:
    """HQ makes each member's beacon secret; the app gets it from HQ, stores get it in the feed."""
    return secrets.token_hex(16)
