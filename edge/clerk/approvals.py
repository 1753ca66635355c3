"""Manager approval on the spot: a manager types their id and PIN into the clerk's session.

The PIN is checked by the same sign-in rules as the sign-in screen (scrypt hash, attempts logged,
lockout after repeated wrong PINs), and every approval is kept with both names: who was signed in
and which manager approved what. The clerk's session (and basket) stays as it was.
"""

from __future__ import annotations

import enum
import time

import sqlite_utils

from tenpo.edge.clerk.accounts import Clerk, SignInRefused, sign_in
from tenpo.edge.db import transaction


class Approval(enum.StrEnum):
    """What a manager approves on the spot (a manager signed in approves their own)."""

    REFUND = "refund"
    STOCK_ADJUST = "stock_adjust"
    INSPECTION_OVERRIDE = "inspection_override"
    MEMBER_EXPORT = "member_export"
    LINE_DISCOUNT = "line_discount"


def check_manager(db: sqlite_utils.Database, manager_id: str, pin: str, now: float | None = None) -> Clerk:
    """The manager, or SignInRefused (wrong PIN, locked, or not a manager). Counts towards the lockout."""
    manager = sign_in(db, manager_id, pin, now)
    if not manager.is_manager:
        raise SignInRefused(f"{manager.name} ({manager.clerk_id}) is not a manager")
    return manager


def record(db: sqlite_utils.Database, action: Approval, clerk: Clerk, manager: Clerk, detail: str,
           now: float | None = None) -> None:  # fmt: skip
    with transaction(db) as conn:
        conn.execute(
            "INSERT INTO clerk_approvals(action, clerk_id, clerk_name, manager_id, manager_name, detail, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (action.value, clerk.clerk_id, clerk.name, manager.clerk_id, manager.name, detail[:500],
             time.time() if now is None else now),
        )  # fmt: skip


def recent(db: sqlite_utils.Database, limit: int = 50) -> list[dict[str, object]]:
    keys = ("action", "clerk_id", "clerk_name", "manager_id", "manager_name", "detail", "at")
    rows = db.conn.execute(f"SELECT {', '.join(keys)} FROM clerk_approvals ORDER BY id DESC LIMIT ?", (limit,))
    return [dict(zip(keys, row)) for row in rows]
