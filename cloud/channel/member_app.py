"""The member app through the channel API (docs/channel.md, "The member app"), and field-level last writer
wins for every profile edit at HQ, whoever makes it.

- ``device-register`` records a device for a member and answers the member's beacon secret: the app is the
  only place the secret goes besides HQ (stores get rotating ids, tenpo.cloud.beacons). ``device-rotate``
  makes a new secret; the ``member.upsert`` it records makes every store get new ids at once, and the old
  secret's ids stop resolving when a store applies them (docs/beacons.md).
- ``member-update`` and a store's ``member.updated`` go through :func:`apply_edit`: each field (each consent
  purpose on its own) is set only if the edit's stamp (hybrid logical time, origin) is newer than the one
  that last set it (tenpo.shared.member_clock). The app's edits are stamped by HQ when they arrive; a store's
  by the store's clock when the clerk made them, so an edit made offline and delivered late still loses to a
  newer one and beats an older one.
"""

from __future__ import annotations

import json
from typing import Any

from tenpo.cloud.changes import member_record, new_beacon_secret
from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple, Origin, Plan, Planner
from tenpo.shared.channel_api import ChannelError
from tenpo.shared.channel_points import DeviceAnswer, DeviceRequest, MemberAnswer, MemberUpdateRequest
from tenpo.shared.events import MemberUpdated
from tenpo.shared.hlc import tick
from tenpo.shared.member_clock import (
    CONSENT_PREFIX,
    PLAIN_FIELDS,
    FieldValue,
    Stamp,
    edited_fields,
    merge,
    with_consent,
)
from tenpo.shared.protocol import Event


def _live(db: Central, member_id: str) -> str:
    golden = db.scalar("SELECT member_id FROM member_aliases WHERE alias = ?", (member_id,))
    found = str(golden) if golden else member_id
    if db.scalar("SELECT 1 FROM members WHERE member_id = ? AND erased = 0", (found,)) is None:
        raise ChannelError("not_found", f"no member {member_id}")
    return found


def upsert(db: Central, member_id: str) -> list[ChangeTuple]:
    record = member_record(db, member_id)
    return [] if record is None else [("member.upsert", member_id, None, record)]


def set_versions(db: Central, changes: list[ChangeTuple], seqs: list[int]) -> None:
    """A member.upsert's seq is the member row's version, as tenpo.cloud.publish stamps it."""
    for seq, (kind, key, _store, _data) in zip(seqs, changes):
        if kind == "member.upsert":
            db.execute("UPDATE members SET version = ? WHERE member_id = ?", (seq, key))


# ---------------------------------------------------------------------------- devices


def register_device(db: Central, channel: str, request: DeviceRequest,
                    now: float) -> tuple[DeviceAnswer, list[ChangeTuple]]:  # fmt: skip
    member_id = _live(db, request.member)
    owner = db.one("SELECT member_id FROM member_devices WHERE channel = ? AND device_id = ?", (channel, request.device))
    if owner is not None and owner[0] != member_id:
        raise ChannelError("conflict", f"device {request.device} is registered to another member")
    secret = db.scalar("SELECT beacon_secret FROM members WHERE member_id = ?", (member_id,))
    changes: list[ChangeTuple] = []
    if not secret:  # a member from before secrets were issued, or one an erasure emptied and re-registered
        secret = new_beacon_secret()
        db.execute("UPDATE members SET beacon_secret = ?, updated_at = ? WHERE member_id = ?", (secret, now, member_id))
        changes = upsert(db, member_id)
    db.execute("INSERT INTO member_devices(channel, device_id, member_id, registered_at, secret_issued_at)"
               " VALUES (?, ?, ?, ?, ?) ON CONFLICT(channel, device_id) DO UPDATE SET"
               " secret_issued_at = excluded.secret_issued_at",
               (channel, request.device, member_id, now, now))  # fmt: skip
    return DeviceAnswer(member_id=member_id, device_id=request.device, secret=str(secret), issued_at=now), changes


def rotate_secret(db: Central, channel: str, request: DeviceRequest,
                  now: float) -> tuple[DeviceAnswer, list[ChangeTuple]]:  # fmt: skip
    member_id = _live(db, request.member)
    owner = db.one("SELECT member_id FROM member_devices WHERE channel = ? AND device_id = ?", (channel, request.device))
    if owner is None or owner[0] != member_id:
        raise ChannelError("not_found", f"device {request.device} is not registered to member {member_id}")
    secret = new_beacon_secret()
    db.execute("UPDATE members SET beacon_secret = ?, updated_at = ? WHERE member_id = ?", (secret, now, member_id))
    db.execute("UPDATE member_devices SET secret_issued_at = ? WHERE member_id = ?", (now, member_id))
    # The member.upsert makes tenpo.cloud.beacons send every store the new secret's ids (never the secret).
    return DeviceAnswer(member_id=member_id, device_id=request.device, secret=secret, issued_at=now), upsert(db, member_id)


# ---------------------------------------------------------------------------- profile edits


def _held(db: Central, member_id: str) -> dict[str, FieldValue]:
    rows = db.all("SELECT field, hlc, origin, value FROM member_field_clocks WHERE member_id = ?", (member_id,))
    return {str(f): FieldValue(Stamp(int(h), str(o)), json.loads(v) if v is not None else None) for f, h, o, v in rows}


def apply_edit(db: Central, member_id: str, fields: dict[str, Any], stamp: Stamp,
               now: float) -> tuple[list[str], list[str]]:  # fmt: skip
    """Set the fields the edit wins (and their clocks); (applied, kept) field names. In the caller's transaction."""
    current = db.one("SELECT consent FROM members WHERE member_id = ? AND erased = 0" + db.lock_suffix(), (member_id,))
    if current is None:
        return [], sorted(fields)
    applied, kept = merge(_held(db, member_id), fields, stamp)
    plain = [name for name in PLAIN_FIELDS if name in applied]
    if plain or any(f.startswith(CONSENT_PREFIX) for f in applied):
        consent = with_consent(json.loads(current[0] or "{}"), applied)
        sets = ", ".join(f"{name} = ?" for name in plain)
        db.execute(f"UPDATE members SET {sets + ', ' if sets else ''}consent = ?, updated_at = ? WHERE member_id = ?",
                   (*(applied[n] for n in plain), json.dumps(consent, ensure_ascii=False, sort_keys=True), now,
                    member_id))  # fmt: skip
    for field, value in applied.items():
        db.execute("INSERT INTO member_field_clocks(member_id, field, hlc, origin, value) VALUES (?, ?, ?, ?, ?)"
                   " ON CONFLICT(member_id, field) DO UPDATE SET hlc = excluded.hlc, origin = excluded.origin,"
                   " value = excluded.value", (member_id, field, stamp.hlc, stamp.origin,
                                               json.dumps(value, ensure_ascii=False)))  # fmt: skip
    return sorted(applied), kept


def hq_stamp(db: Central, member_id: str, origin: str, now: float) -> Stamp:
    """HQ's clock for an edit arriving now: past every stamp it has seen for the member (HLC receive rule)."""
    last = int(db.scalar("SELECT coalesce(max(hlc), 0) FROM member_field_clocks WHERE member_id = ?", (member_id,), 0))
    return Stamp(tick(last, int(now * 1000)), origin)


def update_member(db: Central, channel: str, request: MemberUpdateRequest,
                  now: float) -> tuple[MemberAnswer, list[ChangeTuple]]:  # fmt: skip
    member_id = _live(db, request.member)
    fields = edited_fields({n: getattr(request, n) for n in ("name", "kana", "phone", "email")}, request.consent)
    if not fields:
        raise ChannelError("bad_request", "nothing to change: give name, kana, phone, email or consent")
    applied, kept = apply_edit(db, member_id, fields, hq_stamp(db, member_id, f"channel:{channel}", now), now)
    record = member_record(db, member_id) or {}
    return (MemberAnswer(member_id=member_id, applied=applied, kept=kept, consent=record.get("consent", {})),
            upsert(db, member_id) if applied else [])  # fmt: skip


def overlay(db: Central, member_id: str) -> None:
    """Every clocked field back onto the member row: the members area rebuilds a golden record from its source
    records (survivorship by arrival), which knows nothing of the app's edits nor of the clocks."""
    held = _held(db, member_id)
    current = db.one("SELECT consent FROM members WHERE member_id = ? AND erased = 0", (member_id,))
    if not held or current is None:
        return
    values = {field: value.value for field, value in held.items()}
    plain = [name for name in PLAIN_FIELDS if name in values]
    consent = with_consent(json.loads(current[0] or "{}"), values)
    sets = "".join(f"{name} = ?, " for name in plain)
    db.execute(f"UPDATE members SET {sets}consent = ? WHERE member_id = ?",
               (*(values[n] for n in plain), json.dumps(consent, ensure_ascii=False, sort_keys=True), member_id))  # fmt: skip


def _golden(db: Central, member_id: str) -> str:
    found = db.scalar("SELECT member_id FROM member_aliases WHERE alias = ?", (member_id,))
    return str(found) if found else member_id


def plan_store_update(plan: Plan, origin: Origin, event: Event, p: MemberUpdated, now: float) -> None:
    """A store's ``member.updated`` at HQ (run after the members area resolved the store's record): its fields by
    last writer wins, stamped by the store's clock, then every clocked field over the golden record."""
    fields = edited_fields({n: getattr(p, n) for n in PLAIN_FIELDS}, p.consent)
    stamp = Stamp(event.hlc if event.hlc > 0 else int(now * 1000) << 16, f"store:{origin.store_id}")

    def hook(db: Central, at: float) -> list[ChangeTuple]:
        member_id = _golden(db, p.member_id)
        apply_edit(db, member_id, fields, stamp, at)
        overlay(db, member_id)
        return []

    plan.hooks[f"member-edit/{origin.store_id}/{origin.stream}/{event.seq}"] = hook
    plan.members_touched.add(p.member_id)


def plan_registered(plan: Plan, origin: Origin, event: Event, p: Any, now: float) -> None:
    """A store's registration that the members area attached to a golden member: the clocked fields stay."""
    def keep_clocked_fields(db: Central, at: float) -> list[ChangeTuple]:
        overlay(db, _golden(db, p.member_id))
        return []

    plan.hooks[f"member-overlay/{p.member_id}"] = keep_clocked_fields


def after(first: Planner | None, then: Planner) -> Planner:
    """A follow-up that runs ``first`` (another area's), then ``then``, so ``then``'s hooks run after."""

    def both(plan: Plan, origin: Origin, event: Event, payload: Any, now: float) -> None:
        if first is not None:
            first(plan, origin, event, payload, now)
        then(plan, origin, event, payload, now)

    return both
