"""The chain's registration rules for the store counter: set at HQ, sent to every store as
`member.rules`, applied by `tenpo edge member add` and the clerk terminal (tenpo.edge.membership.rules).

The file (TOML):

    required = ["name", "phone"]          # fields a registration must fill
    mobile_only = true                    # the phone must be a mobile number
    contact_any_of = ["phone", "email"]   # at least one of these
    consent_text = "お得な情報をメールでお送りしてもよろしいですか"
"""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from tenpo.cloud.changes import audit, record_changes
from tenpo.cloud.db import Central
from tenpo.shared.changes import MemberRules
from tenpo.shared.errors import UserError

SETTING = "counter.rules"
_KEYS = {"required", "mobile_only", "contact_any_of", "consent_text"}

__all__ = ["current_rules", "parse_rules_file", "set_rules"]


def parse_rules_file(path: Path) -> MemberRules:
    """The rules in a TOML file; UserError naming the key that is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"--file {path}: cannot read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"--file {path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise UserError(f"--file {path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    try:
        return msgspec.convert(data, MemberRules)
    except msgspec.ValidationError as exc:
        raise UserError(f"--file {path}: {exc}") from None


def set_rules(db: Central, rules: MemberRules, actor: str = "operator", now: float | None = None) -> int:
    """Store the rules and send them to every store; returns the change seq that carries them."""
    now = time.time() if now is None else now
    data: dict[str, Any] = msgspec.to_builtins(rules)
    with db.transaction():
        (seq,) = record_changes(db, [("member.rules", "rules", None, data)], now)
        value = json.dumps({**data, "version": seq}, ensure_ascii=False)
        db.execute("INSERT INTO member_settings(name, value, updated_by, updated_at) VALUES (?, ?, ?, ?)"
                   " ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by,"
                   " updated_at = excluded.updated_at", (SETTING, value, actor, now))  # fmt: skip
        audit(db, actor, "member.rules.set", None, data)
    return int(seq)


def current_rules(db: Central) -> MemberRules | None:
    value = db.scalar("SELECT value FROM member_settings WHERE name = ?", (SETTING,))
    return None if value is None else msgspec.json.decode(value.encode(), type=MemberRules)
