"""The channel API's later operations at an aggregator: points at the web checkout (tenpo.cloud.channel.points)
and the member app (tenpo.cloud.channel.member_app). tenpo.cloud.channel.service hands every operation named
in :data:`HANDLERS` here.

Writes are idempotent like ``reserve``: HQ keeps ``(channel, key)`` with the request's fingerprint and the
answer it gave (``channel_requests.response``); the same key with the same request gets that answer again
(a device gets the member's secret as it is now), the same key with another request is ``conflict``. The write,
its ledger entries, its feed changes and the key commit in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import msgspec

from tenpo.cloud.changes import record_changes
from tenpo.cloud.channel import member_app, points
from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple
from tenpo.shared.channel_api import ChannelError
from tenpo.shared.channel_points import PointsBalanceQuery, result_of

Write = Callable[[Central, str, Any, float], tuple[msgspec.Struct, list[ChangeTuple]]]

WRITES: dict[str, Write] = {
    "points-hold": points.hold,
    "points-capture": points.capture,
    "points-release": points.release,
    "points-earn": points.earn,
    "device-register": member_app.register_device,
    "device-rotate": member_app.rotate_secret,
    "member-update": member_app.update_member,
}


def _fingerprint(op: str, request: msgspec.Struct) -> str:
    fields = msgspec.to_builtins(request)
    return hashlib.sha256(op.encode() + msgspec.json.encode(dict(sorted(fields.items())))).hexdigest()


def run(db: Central, channel: str, op: str, request: Any, now: float) -> tuple[dict[str, Any], bool]:
    """The result of one of :data:`HANDLERS`' operations, and whether the change feed grew."""
    if isinstance(request, PointsBalanceQuery):
        return result_of(points.lookup(db, request.member)), False
    write = WRITES.get(op)
    if write is None:
        raise ChannelError("bad_request", f"unknown operation {op!r}")
    fingerprint = _fingerprint(op, request)
    with db.transaction():
        found = db.one("SELECT op, fingerprint, response FROM channel_requests WHERE channel = ? AND idem_key = ?"
                       + db.lock_suffix(), (channel, request.key))  # fmt: skip
        if found is not None:
            if found[0] != op or found[1] != fingerprint or found[2] is None:
                raise ChannelError("conflict", f"idempotency key {request.key!r} was used for a different request")
            remembered: dict[str, Any] = json.loads(found[2])
            if "secret" in remembered:  # not kept beside the key: the member's secret as it is now
                remembered["secret"] = str(db.scalar("SELECT beacon_secret FROM members WHERE member_id = ?",
                                                     (remembered["member_id"],), ""))  # fmt: skip
            return remembered, False
        answer, changes = write(db, channel, request, now)
        result = result_of(answer)
        seqs = record_changes(db, changes, now)
        member_app.set_versions(db, changes, seqs)
        db.execute("INSERT INTO channel_requests(channel, idem_key, op, fingerprint, reservation_id, response,"
                   " created_at) VALUES (?, ?, ?, ?, NULL, ?, ?)",
                   (channel, request.key, op, fingerprint, _kept(result), now))  # fmt: skip
    return result, bool(changes)


def _kept(result: dict[str, Any]) -> str:
    """The answer as kept beside the key: a beacon secret lives only in the member's row."""
    return json.dumps({k: ("" if k == "secret" else v) for k, v in result.items()}, ensure_ascii=False)


HANDLERS: frozenset[str] = frozenset({"points-balance", *WRITES})
