"""The chain's registration rules at the counter, as HQ last sent them (`member.rules` in the feed).

Kept in the replica's `meta` table (one JSON value, newest version wins), so a store offline keeps
applying the last rules it received. `problems` is pure: the registration fields in, one message per
field the rules refuse ("phone: '03-1234-5678' is not a mobile number"), the shape the clerk's form
puts under each field.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

import msgspec

from tenpo.edge.outbox import get_meta, set_meta
from tenpo.shared.changes import MemberRules, rows_of
from tenpo.shared.cleansing import CleansingRules, cleanse_member_record

META_KEY = "member_rules"

__all__ = ["META_KEY", "current_rules", "problems", "registration_problems"]


def current_rules(conn: sqlite3.Connection) -> MemberRules | None:
    """The rules this store last received, or None (then the store's own defaults apply)."""
    text = get_meta(conn, META_KEY)
    if not text:
        return None
    try:
        return msgspec.json.decode(text.encode(), type=MemberRules)
    except msgspec.ValidationError:  # written by a newer tenpo: keep registering with the defaults
        return None


def problems(rules: MemberRules, fields: Mapping[str, str | None]) -> list[str]:
    """What the chain's rules refuse in these registration fields, one "field: problem" per field."""
    cleansing_rules = CleansingRules(required=frozenset(rules.required), mobile_only=rules.mobile_only,
                                     contact_any_of=frozenset(rules.contact_any_of))  # fmt: skip
    _clean, errors = cleanse_member_record({k: v for k, v in fields.items() if v is not None}, cleansing_rules)
    return [str(error) for error in errors]


def registration_problems(conn: sqlite3.Connection, fields: Mapping[str, str | None]) -> list[str]:
    """`problems` under the rules this store holds; none when HQ never sent any."""
    rules = current_rules(conn)
    return problems(rules, fields) if rules is not None else []


@rows_of(MemberRules)
def store_rules(conn: sqlite3.Connection, store_id: str, rows: list[MemberRules], version: int | None) -> None:
    """Feed handler: keep the newest rules (a replayed older change never overwrites a newer one)."""
    for row in rows:
        seq = version or row.version
        held = current_rules(conn)
        if held is not None and held.version > seq:
            continue
        data: dict[str, Any] = msgspec.to_builtins(msgspec.structs.replace(row, version=seq))
        set_meta(conn, META_KEY, json.dumps(data, ensure_ascii=False))
