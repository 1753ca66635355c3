"""A member's rank and points lots at the store (edge migration 11), from HQ's ``member.loyalty`` change.

With HQ out of reach the store still knows, from the last change it received and its own entries since:
the multiplier a sale earns at (the rank's), how many points are still good today (lots past their last day
cannot be redeemed, even before HQ's expiry entry arrives), and what expires soon (for the clerk and
`tenpo edge member find`). The rules are HQ's own (tenpo.shared.loyalty); docs/loyalty.md.

The table is WITHOUT ROWID: a member merge at the store moves rows of rowid tables with a member_id column
from the loser to the winner (tenpo.edge.membership.feed); HQ sends the winner's own loyalty instead.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlite_utils

from tenpo.shared.changes import MemberLoyalty, rows_of
from tenpo.shared.loyalty import DEFAULT_EXPIRY_MONTHS, Entry, jst_date, usable

Handler = Callable[[sqlite3.Connection, str, list[Any], "int | None"], None]
SOON_DAYS = 62  # "expiring soon": the clerk sees lots ending within about two months first


def migrate(db: sqlite_utils.Database) -> bool:
    db.execute(
        """CREATE TABLE member_loyalty (
            member_id TEXT PRIMARY KEY,
            rank TEXT NOT NULL,
            multiplier_pct INTEGER NOT NULL,
            spend INTEGER NOT NULL DEFAULT 0,
            as_of TEXT NOT NULL,          -- the JST day HQ computed it for
            expiry_months INTEGER NOT NULL,
            lots TEXT NOT NULL,           -- JSON [[expires_on, points], ...], soonest first
            through INTEGER NOT NULL,     -- our own outbox seq the lots already count
            version INTEGER NOT NULL) WITHOUT ROWID"""
    )
    return True


@rows_of(MemberLoyalty)
def _store(conn: sqlite3.Connection, store_id: str, rows: list[MemberLoyalty], version: int | None) -> None:
    conn.executemany(
        "INSERT INTO member_loyalty(member_id, rank, multiplier_pct, spend, as_of, expiry_months, lots, through, version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(member_id) DO UPDATE SET rank = excluded.rank,"
        " multiplier_pct = excluded.multiplier_pct, spend = excluded.spend, as_of = excluded.as_of,"
        " expiry_months = excluded.expiry_months, lots = excluded.lots, through = excluded.through,"
        " version = excluded.version WHERE member_loyalty.version < excluded.version",
        [(r.member_id, r.rank, r.multiplier_pct, r.spend, r.as_of, r.expiry_months,
          json.dumps([[lot.expires_on, lot.points] for lot in r.lots]), (r.through or {}).get(store_id, 0),
          version or r.version) for r in rows],
    )  # fmt: skip


CHANGE_HANDLERS: dict[str, Handler] = {"member.loyalty": _store}
SNAPSHOT_HANDLERS: dict[str, Handler] = {"loyalty": _store}


@dataclass(frozen=True, slots=True)
class Standing:
    """What the store knows of a member's loyalty now."""

    rank: str | None  # None: HQ has not ranked the member yet (earns at x1)
    multiplier_pct: int
    usable: int  # points that may be redeemed today (the balance less lots past their last day)
    expired: int  # points in the balance whose lots ended (HQ's expiry entry is on its way)
    lots: tuple[tuple[date, int], ...]  # what is left, soonest first
    today: date | None = None  # the JST day this was worked out for

    def expiring_within(self, today: date, days: int = SOON_DAYS) -> tuple[tuple[date, int], ...]:
        return tuple((until, points) for until, points in self.lots if (until - today).days <= days)

    def summary(self, today: date | None = None) -> str:
        """One line for a clerk: "ゴールド x2 · 120 pt expire on 2026-12-31"."""
        today = today or self.today or date.today()
        rank = f"{self.rank} x{self.multiplier_pct / 100:g}" if self.rank else "rank not known yet"
        soon = self.expiring_within(today) or self.lots[:1]
        ends = " · ".join(f"{points:,} pt expire on {until.isoformat()}" for until, points in soon[:2])
        return " · ".join(part for part in (rank, ends) if part)

    def as_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "multiplier_pct": self.multiplier_pct, "usable_points": self.usable,
                "expired_points": self.expired,
                "lots": [{"expires_on": d.isoformat(), "points": p} for d, p in self.lots]}  # fmt: skip


def standing(conn: sqlite3.Connection, member_id: str, balance: int, *, now: float | None = None) -> Standing:
    """The member's rank and good points as of today (JST), from HQ's last change and our entries since."""
    today = jst_date(now if now is not None else time.time())
    try:
        row = conn.execute("SELECT rank, multiplier_pct, expiry_months, lots, through FROM member_loyalty"
                           " WHERE member_id = ?", (member_id,)).fetchone()  # fmt: skip
    except sqlite3.OperationalError:  # a replica not migrated yet (a test's bare schema)
        row = None
    if row is None:
        return Standing(None, 100, balance, 0, (), today)
    rank, pct, months, raw, through = row
    lots = _lots(raw)
    own = [Entry(float(at), int(delta), str(kind), None, int(seq)) for seq, delta, kind, at in conn.execute(
        "SELECT store_seq, delta, kind, created_at FROM points_ledger WHERE member_id = ? AND store_seq > ?",
        (member_id, int(through)))]  # fmt: skip
    good, left = usable(lots, own, today=today, balance=balance, months=int(months or DEFAULT_EXPIRY_MONTHS))
    return Standing(str(rank), int(pct), good, balance - good, tuple(left), today)


def _lots(raw: str) -> list[tuple[date, int]]:
    try:
        return [(date.fromisoformat(str(until)), int(points)) for until, points in json.loads(raw)]
    except (ValueError, TypeError):
        return []
