"""A member's profile and consent edited at the counter: the local copy changes and a ``member.updated`` goes to
HQ in the same transaction (issue 18). HQ sets each field only if this edit is the newest by hybrid logical
clock (the event's stamp, taken when the clerk saved it), so an edit made offline and delivered late neither
overwrites a newer one from the app nor is lost to an older one; HQ's member.upsert then brings every store,
this one included, the fields as they won.

Only the fields that change are sent, and for consent only the purposes that change: a clerk correcting a
phone number never re-sends (and so never re-dates) the consent the member gave in the app. The event names
the clerk, and says whether the member was at the counter (docs/authority.md: required to edit another
store's member's contact fields).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping

import sqlite_utils

from tenpo.edge import keystore
from tenpo.edge.db import transaction
from tenpo.edge.membership import vault
from tenpo.edge.outbox import append
from tenpo.shared import cleansing
from tenpo.shared.errors import UserError
from tenpo.shared.events import MemberUpdated
from tenpo.shared.field_bounds import MAX_FIELD_CHARS

# A field added here is also named in _edited and in update_member's MemberUpdated (typed keywords, not **).
_CLEAN: dict[str, Callable[[str], str]] = {
    "name": cleansing.normalize_name,
    "kana": cleansing.normalize_kana,
    "phone": cleansing.normalize_phone,
    "email": cleansing.normalize_email,
}


def _cleaned(fields: Mapping[str, str | None]) -> dict[str, str]:
    out: dict[str, str] = {}
    errors: list[str] = []
    for name, value in fields.items():
        if value is None:
            continue
        if name not in _CLEAN:
            errors.append(f"{name}: not a field a clerk edits here")
        elif len(value) > MAX_FIELD_CHARS:
            errors.append(f"{name}: {len(value)} characters, at most {MAX_FIELD_CHARS}")
        elif not value.strip():
            errors.append(f"{name}: empty")
        else:
            try:
                out[name] = _CLEAN[name](value)
            except cleansing.CleansingError as exc:
                errors.append(str(exc))
    if errors:
        raise UserError("; ".join(errors))
    return out


def update_member(db: sqlite_utils.Database, member_id: str, clerk_id: str, *, fields: Mapping[str, str | None],
                  consent: Mapping[str, bool] | None = None, member_present: bool = False) -> MemberUpdated:  # fmt: skip
    """Change the member here and tell HQ; returns the event sent. UserError if nothing would change."""
    clean = _cleaned(fields)
    with transaction(db) as conn:
        row = conn.execute("SELECT consent FROM members WHERE member_id = ? AND erased = 0", (member_id,)).fetchone()
        if row is None:
            raise UserError(f"member {member_id}: not in this store's replica")
        codec = keystore.codec(conn)
        old = vault.read_person(conn, codec, member_id) or vault.Personal()
        changed = {k: v for k, v in clean.items() if getattr(old, k) != v}
        had: dict[str, bool] = json.loads(row[0] or "{}")
        purposes = {p: bool(v) for p, v in (consent or {}).items() if had.get(p) != bool(v)}
        if not changed and not purposes:
            raise UserError(f"member {member_id}: nothing to change")
        if changed:
            vault.write_person(conn, codec, member_id, _edited(old, changed), old)
        conn.execute("UPDATE members SET consent = ?, updated_at = ? WHERE member_id = ?",
                     (json.dumps({**had, **purposes}, sort_keys=True), time.time(), member_id))  # fmt: skip
        event = MemberUpdated(member_id=member_id, name=changed.get("name"), kana=changed.get("kana"),
                              phone=changed.get("phone"), email=changed.get("email"), consent=purposes or None,
                              clerk_id=clerk_id, member_present=member_present)  # fmt: skip
        append(conn, event)
    return event


def _edited(old: vault.Personal, changed: Mapping[str, str]) -> vault.Personal:
    """``old`` with the fields a clerk changed (the keys of ``_CLEAN``) replaced."""
    return dataclasses.replace(old, name=changed.get("name", old.name), kana=changed.get("kana", old.kana),
                               phone=changed.get("phone", old.phone), email=changed.get("email", old.email))
