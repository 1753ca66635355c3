"""Loyalty at HQ over the central database: configuration, a member's lots, the expiry job and the rank job.

The rules are pure (tenpo.shared.loyalty); this reads the ledger in the order things happened (a store's
entry by its hybrid-logical time, HQ's own entries by when HQ wrote them), appends ``expiry`` entries, and
records the ``member.loyalty`` changes that carry rank, multiplier and lots to every store.

Both jobs are idempotent: the expiry entry is the difference between what the lots say has expired and
what earlier expiry entries took, so a second run (or a second aggregator running the same job) adds
nothing; a rank is sent again only when it or the lots changed.
"""

from __future__ import annotations

import functools
import json
import time
import tomllib
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from tenpo.cloud.changes import record_changes
from tenpo.cloud.db import Central
from tenpo.cloud.ledgers import INSERT_POINTS, points_entry
from tenpo.cloud.loyalty.horizon import current_horizon, last_horizon, news_since
from tenpo.cloud.loyalty.locking import in_retried_transaction, live_versions, lock_balances
from tenpo.cloud.loyalty.rows import (
    Held,
    chunk_entries,
    chunks,
    held_rows,
    lots_differ,
    member_entries,
    upsert_distinct,
)
from tenpo.cloud.members.store import register_derived
from tenpo.cloud.plan import ChangeTuple
from tenpo.cloud.sales.conflicts import points_balance_change
from tenpo.shared.errors import UserError
from tenpo.shared.loyalty import (
    EXPIRY_KIND,
    JST,
    LoyaltyConfig,
    LoyaltyConfigError,
    Replay,
    expiring,
    jst_date,
    parse_loyalty,
    replay,
)

HQ_STORE = "HQ"  # as HQ's other own entries (tenpo.cloud.sales.conflicts)
LOYALTY_STREAM = "loyalty"  # expiry entries (store_seq 0: no meta row, they count by when HQ wrote them)
CAMPAIGN_STREAM = "campaign"  # campaign grants, numbered 1, 2, ... so each has its meta row
MAX_LOTS_SENT = 24  # the soonest-ending days a store gets; enough for a clerk and for offline expiry
BATCH = 2000  # members per transaction in the rank job
EXPIRY_CHUNK = 5000  # members per transaction in the expiry job: few commits (each one waits for the disk),
# while the aggregator's applies wait at most one chunk (a second or so) for the write lock

# ---------------------------------------------------------------------------- configuration


def load_config(db: Central) -> LoyaltyConfig:
    raw = db.scalar("SELECT value FROM loyalty_settings WHERE name = 'config'")
    if raw is None:
        return LoyaltyConfig()
    return parse_loyalty({"loyalty": json.loads(raw)})


def set_config(db: Central, path: Path) -> LoyaltyConfig:
    """Read `[loyalty]` from a TOML file, check it, and keep it for the jobs and the apply."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        config = parse_loyalty(document)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    except LoyaltyConfigError as exc:
        raise UserError(f"{path}: {exc}") from None
    with db.transaction():
        db.execute(
            "INSERT INTO loyalty_settings(name, value, updated_at) VALUES ('config', ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (json.dumps(config.as_json(), ensure_ascii=False), time.time()),
        )
    return config


# ---------------------------------------------------------------------------- entries and lots


def last_expiry_date(db: Central) -> date | None:
    found = db.scalar("SELECT max(as_of) FROM loyalty_runs WHERE job = 'expire'")
    return date.fromisoformat(found) if found else None


@dataclass(frozen=True, slots=True)
class MemberLots:
    member_id: str
    balance: int
    expired_due: int  # what the next expiry entry would take (negative) or give back (positive)
    lots: list[tuple[date, int]]
    rank: str | None
    multiplier_pct: int | None

    def as_json(self) -> dict[str, Any]:
        return {"member_id": self.member_id, "balance": self.balance, "expiry_due": self.expired_due,
                "rank": self.rank, "multiplier_pct": self.multiplier_pct,
                "lots": [{"expires_on": d.isoformat(), "points": p} for d, p in self.lots]}  # fmt: skip


def member_lots(db: Central, member_id: str, as_of: date) -> MemberLots:
    config = load_config(db)
    result = replay(member_entries(db, member_id), as_of=as_of, months=config.expiry_months)
    balance = int(db.scalar("SELECT balance FROM points_balances WHERE member_id = ?", (member_id,), 0))
    rank = db.one("SELECT rank, multiplier_pct FROM loyalty_members WHERE member_id = ?", (member_id,))
    return MemberLots(member_id, balance, result.written - result.expired, expiring(result.lots),
                      rank[0] if rank else None, int(rank[1]) if rank else None)  # fmt: skip


def expiry_entry(db: Central, member_id: str, delta: int, as_of: date, now: float) -> None:
    db.execute(*points_entry(member_id=member_id, delta=delta, kind=EXPIRY_KIND, ref=f"expiry:{as_of.isoformat()}",
                             store_id=HQ_STORE, stream=LOYALTY_STREAM, store_seq=0, at=now))  # fmt: skip


def correct_member(db: Central, member_id: str, now: float) -> list[ChangeTuple]:
    """After a store's entry reached HQ: re-run the member's lots as of the last expiry run and append the
    difference (an offline redemption made before the lot's end gives back what the expiry took)."""
    as_of = last_expiry_date(db)
    if as_of is None:
        return []
    config = load_config(db)
    result = replay(member_entries(db, member_id), as_of=as_of, months=config.expiry_months)
    due = result.written - result.expired
    if due == 0:
        return []
    expiry_entry(db, member_id, due, as_of, now)
    return [loyalty_change(db, config, member_id, result, as_of)] if db.one(
        "SELECT 1 FROM loyalty_members WHERE member_id = ?", (member_id,)) else []  # fmt: skip


def grant(db: Central, member_id: str, points: int, expires_on: date, ref: str, now: float | None = None) -> int:
    """Campaign points with their own last good day: an HQ accrual and its meta row; returns its number."""
    now = now or time.time()
    if points < 1:
        raise UserError(f"points {points}: a grant must be at least 1")
    with db.transaction():
        if db.one("SELECT 1 FROM members WHERE member_id = ? AND erased = 0", (member_id,)) is None:
            raise UserError(f"member {member_id}: not found at HQ")
        seq = int(db.scalar("SELECT coalesce(max(store_seq), 0) + 1 FROM loyalty_points_meta WHERE store_id = ?"
                            " AND stream = ?", (HQ_STORE, CAMPAIGN_STREAM)))  # fmt: skip
        db.execute(*points_entry(member_id=member_id, delta=points, kind="adjustment", ref=ref, store_id=HQ_STORE,
                                 stream=CAMPAIGN_STREAM, store_seq=seq, at=now))  # fmt: skip
        db.execute("INSERT INTO loyalty_points_meta(store_id, stream, store_seq, member_id, kind, delta, ref, at,"
                   " expires_on, checked) VALUES (?, ?, ?, ?, 'adjustment', ?, ?, ?, ?, 1)",
                   (HQ_STORE, CAMPAIGN_STREAM, seq, member_id, points, ref, now, expires_on.isoformat()))  # fmt: skip
        record_changes(db, [points_balance_change(db, member_id)], now)
    return seq


# ---------------------------------------------------------------------------- the feed


def _lots_data(result: Replay) -> list[dict[str, Any]]:
    return [{"expires_on": d.isoformat(), "points": p} for d, p in expiring(result.lots)[:MAX_LOTS_SENT]]


def loyalty_data(config: LoyaltyConfig, member_id: str, held: Held | None, lots: list[dict[str, Any]],
                 through: dict[str, int], as_of: date) -> ChangeTuple:  # fmt: skip
    """A ``member.loyalty`` change: the rank as held (the first rank if none yet) and these lots."""
    first = config.ranks[0]
    rank, pct, spend = held[:3] if held else (first.name, first.multiplier_pct, 0)
    return ("member.loyalty", member_id, None, {
        "member_id": member_id, "rank": rank, "multiplier_pct": pct, "spend": spend, "as_of": as_of.isoformat(),
        "expiry_months": config.expiry_months, "lots": lots, "through": through, "version": 0})  # fmt: skip


def loyalty_change(db: Central, config: LoyaltyConfig, member_id: str, result: Replay, as_of: date) -> ChangeTuple:
    """One member's ``member.loyalty`` change, read from the database (rank as held, lots as ``result`` says)."""
    row = db.one("SELECT rank, multiplier_pct, spend, lots FROM loyalty_members WHERE member_id = ?", (member_id,))
    held = (str(row[0]), int(row[1]), int(row[2]), str(row[3])) if row else None
    through = points_balance_change(db, member_id)[3]["through"]
    return loyalty_data(config, member_id, held, _lots_data(result), through, as_of)


UPSERT_SENT = (
    "INSERT INTO loyalty_members(member_id, rank, multiplier_pct, spend, lots, as_of, version, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(member_id) DO UPDATE SET rank = excluded.rank,"
    " multiplier_pct = excluded.multiplier_pct, spend = excluded.spend, lots = excluded.lots,"
    " as_of = excluded.as_of, version = excluded.version, updated_at = excluded.updated_at")  # fmt: skip
UPSERT_SENT_WITH_END = (  # the expiry job's: the soonest lot end in the same write
    "INSERT INTO loyalty_members(member_id, rank, multiplier_pct, spend, lots, as_of, version, updated_at, next_end)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(member_id) DO UPDATE SET rank = excluded.rank,"
    " multiplier_pct = excluded.multiplier_pct, spend = excluded.spend, lots = excluded.lots,"
    " as_of = excluded.as_of, version = excluded.version, updated_at = excluded.updated_at,"
    " next_end = excluded.next_end")  # fmt: skip


def _send(db: Central, changes: list[ChangeTuple], now: float, as_of: date, held: dict[str, Held] | None = None,
          ends: dict[str, tuple[str, str | None]] | None = None) -> None:  # fmt: skip
    """Record the changes and remember, per member, what was sent (``ends``: the expiry job's lots as JSON and
    soonest lot end of each member); a rank the stores did not hold yet goes into the rank log with the seq
    of the change that carries it."""
    seqs = record_changes(db, changes, now)
    sent: list[tuple[Any, ...]] = []
    ranks: list[tuple[Any, ...]] = []
    day = as_of.isoformat()
    for seq, (kind, member_id, _store, data) in zip(seqs, changes):
        if kind != "member.loyalty":
            continue
        if ends is None:
            sent.append((member_id, data["rank"], data["multiplier_pct"], data["spend"], json.dumps(data["lots"]),
                         day, seq, now))  # fmt: skip
        else:
            text, end = ends[member_id]
            sent.append((member_id, data["rank"], data["multiplier_pct"], data["spend"], text, day, seq, now, end))
        before = None if held is None else held.get(member_id)
        if before is None or before[:2] != (data["rank"], data["multiplier_pct"]):
            ranks.append((member_id, data["rank"], data["multiplier_pct"], seq, day))
    upsert_distinct(db, UPSERT_SENT if ends is None else UPSERT_SENT_WITH_END, sent)
    db.executemany("INSERT INTO loyalty_rank_log(member_id, rank, multiplier_pct, change_seq, as_of)"
                   " VALUES (?, ?, ?, ?, ?)", ranks)  # fmt: skip


# ---------------------------------------------------------------------------- the jobs


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    as_of: date
    members: int  # members given an expiry entry (or a correction)
    expired: int  # points taken (net of corrections)
    members_seen: int

    def as_json(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "members": self.members, "expired": self.expired,
                "members_seen": self.members_seen}  # fmt: skip


def run_expiry(db: Central, as_of: date, now: float | None = None) -> ExpiryReport:
    """Expire, for every member, what the lots say is past its date on ``as_of`` and not yet expired.

    Refuses to go back before the last run (an earlier date would give points back that stores already saw
    expire). Members go ``EXPIRY_CHUNK`` at a time, each chunk in one transaction: one query reads the chunk's
    entries, the lot rules (tenpo.shared.loyalty.replay, the one definition) say what is due, and one batched
    write each appends the chunk's expiry entries, its changes for the stores and its loyalty rows."""
    now = now or time.time()
    last = last_expiry_date(db)
    if last is not None and as_of < last:
        raise UserError(f"--as-of {as_of}: the expiry job already ran as of {last}; it never goes back")
    config = load_config(db)
    horizon, last_run = current_horizon(db), last_horizon(db)
    last_at = db.scalar("SELECT coalesce(max(at), 0) FROM loyalty_runs WHERE job = 'expire'", (), 0)
    changed_rules = float(db.scalar("SELECT coalesce(max(updated_at), 0) FROM loyalty_settings", (), 0)) > float(last_at)
    # Incremental: only members with entries the last run may not have seen (tenpo.cloud.loyalty.horizon; not
    # our own expiry entries), or a lot ending before ``as_of`` (loyalty_members.next_end); everyone on the
    # first run or after the rules changed.
    if not last_run.mark or changed_rules:
        wanted = db.all("SELECT DISTINCT member_id FROM points_ledger ORDER BY member_id")
    else:
        news, since = news_since(db, last_run)
        wanted = db.all(f"SELECT member_id FROM points_ledger WHERE {news} AND stream <> ? UNION SELECT member_id"
                        " FROM loyalty_members WHERE next_end < ? ORDER BY 1", (*since, LOYALTY_STREAM, as_of.isoformat()))
    applied = {str(s): int(n) for s, n in db.all("SELECT store_id, last_applied_seq FROM stores")}
    # The run is known from its start (its figures and mark come at the end): a merge while it runs corrects
    # the winner as of this day, whether the winner's chunk is done already or not (follow_members).
    with db.transaction():
        run_id = int(db.scalar("INSERT INTO loyalty_runs(job, as_of, members, points, ledger_mark, at)"
                               " VALUES ('expire', ?, 0, 0, 0, 0) RETURNING id", (as_of.isoformat(),)))  # fmt: skip
    totals = [0, 0, 0]  # members given an entry, points expired, members read
    for chunk in chunks([str(m) for (m,) in wanted], EXPIRY_CHUNK):
        done = in_retried_transaction(db, functools.partial(_expire_chunk, db, config, chunk, as_of, now, applied))
        totals = [a + b for a, b in zip(totals, done)]
    with db.transaction():
        db.execute("UPDATE loyalty_runs SET members = ?, points = ?, ledger_mark = ?, ledger_xmin = ?,"
                   " ledger_snapshot = ?, at = ? WHERE id = ?", (totals[0], totals[1], *horizon, now, run_id))  # fmt: skip
    return ExpiryReport(as_of, totals[0], totals[1], totals[2])


def _expire_chunk(db: Central, config: LoyaltyConfig, chunk: list[str], as_of: date, now: float,
                  applied: dict[str, int]) -> list[int]:  # fmt: skip
    """One chunk of the expiry job, inside its transaction (see :func:`run_expiry`): members given an entry,
    points expired, members read. Read under the chunk's balance locks (tenpo.cloud.loyalty.locking): nothing
    moves these members' points between the read and the write."""
    totals = [0, 0, 0]
    lock_balances(db, chunk)
    found = chunk_entries(db, chunk)
    held = held_rows(db, chunk)
    ref = f"expiry:{as_of.isoformat()}"
    entries: list[tuple[Any, ...]] = []
    changes: list[ChangeTuple] = []
    ends: dict[str, tuple[str, str | None]] = {}  # lots (JSON) and soonest end of each member written
    moved: list[tuple[str | None, str]] = []  # (soonest lot end, member) of the others whose end moved
    throughs: dict[frozenset[str], dict[str, int]] = {}
    for member_id in chunk:
        read = found.get(member_id)
        if read is None:
            continue
        totals[2] += 1
        result = replay(read[0], as_of=as_of, months=config.expiry_months)
        due = result.written - result.expired
        lots = _lots_data(result)
        end = lots[0]["expires_on"] if lots else None
        text = json.dumps(lots)
        before, before_end = held.get(member_id, (None, None))
        if due or (before is None and lots) or (before is not None and lots_differ(lots, text, before[3])):
            stores = frozenset(read[1])
            through = throughs.get(stores)
            if through is None:  # most members bought at the same few stores: one dict each (never changed)
                through = throughs[stores] = {s: applied[s] for s in sorted(stores) if s in applied}
            if due:
                totals[0] += 1
                totals[1] -= due
                entries.append((member_id, due, EXPIRY_KIND, ref, HQ_STORE, LOYALTY_STREAM, 0, now))  # INSERT_POINTS
                changes.append(("points.balance", member_id, None,
                                {"member_id": member_id, "balance": result.balance, "through": through}))  # fmt: skip
            changes.append(loyalty_data(config, member_id, before, lots, through, as_of))
            ends[member_id] = (text, end)
        elif before is not None and end != before_end:
            moved.append((end, member_id))
    db.executemany(INSERT_POINTS, entries)
    _send(db, changes, now, as_of, {m: h for m, (h, _end) in held.items()}, ends)
    db.executemany("UPDATE loyalty_members SET next_end = ? WHERE member_id = ?", moved)
    return totals


def spend_by_member(db: Central, as_of: date, config: LoyaltyConfig, member_id: str | None = None) -> dict[str, int]:
    """Yen each golden member paid in the rolling window ending ``as_of`` (JST): store sales less refunds,
    and paid web/app orders, under the golden id (merged-away ids through member_aliases); ``member_id``:
    that golden member only."""
    start = config.window_start(as_of)
    spend: dict[str, int] = {}
    low = start.isoformat()
    one = (" AND (s.member_id = ? OR s.member_id IN (SELECT alias FROM member_aliases WHERE member_id = ?))",
           " AND src.member_id = ?")
    rows = db.all(
        "SELECT coalesce(a.member_id, s.member_id), s.kind, s.total, s.at FROM sales s"
        " LEFT JOIN member_aliases a ON a.alias = s.member_id WHERE s.member_id IS NOT NULL AND s.at >= ?"
        + (one[0] if member_id else ""), (low, member_id, member_id) if member_id else (low,))  # fmt: skip
    for member_id, kind, total, at in rows:
        day = _jst_day(at)
        if day is not None and start < day <= as_of:
            amount = -abs(int(total)) if kind == "refund" else int(total)
            spend[member_id] = spend.get(member_id, 0) + amount
    orders = db.all(
        "SELECT src.member_id, o.total, o.ordered_at FROM member_orders o JOIN member_sources src"
        " ON src.source = o.source AND src.source_id = o.source_id"
        " WHERE o.status IN ('paid', 'partially_refunded') AND o.ordered_at >= ?" + (one[1] if member_id else ""),
        (low, member_id) if member_id else (low,))  # fmt: skip
    for member_id, total, at in orders:
        day = _jst_day(at)
        if day is not None and start < day <= as_of:
            spend[member_id] = spend.get(member_id, 0) + int(total)
    return spend


def _jst_day(text: str | None) -> date | None:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment.astimezone(JST) if moment.tzinfo else moment).date()


@dataclass(frozen=True, slots=True)
class RankRow:
    member_id: str
    spend: int
    rank: str
    multiplier_pct: int
    previous: str | None

    def as_json(self) -> dict[str, Any]:
        return {"member_id": self.member_id, "spend": self.spend, "rank": self.rank,
                "multiplier_pct": self.multiplier_pct, "previous": self.previous}  # fmt: skip


def run_ranks(db: Central, as_of: date, now: float | None = None, *, dry_run: bool = False) -> list[RankRow]:
    """Every live member's rank from the rolling spend; a changed rank is sent to the stores.

    The spend is read once for everyone, the changed ranks written ``BATCH`` members a transaction. A member
    merged, unmerged or erased in between has a new version (or none) by then: its rank is computed again in
    the write's transaction, from the spend as it is, under the member rows' locks (tenpo.cloud.loyalty.locking),
    and written only if it differs from what the merge itself sent."""
    now = now or time.time()
    config = load_config(db)
    # Versions before the spend: a merge that commits after this read shows as a newer version at write time.
    versions = {str(m): int(v) for m, v in db.all("SELECT member_id, version FROM members WHERE erased = 0"
                                                  " ORDER BY member_id")}  # fmt: skip
    held = {m: (r, int(p), int(s)) for m, r, p, s in db.all("SELECT member_id, rank, multiplier_pct, spend FROM loyalty_members")}
    spend = spend_by_member(db, as_of, config)
    rows: list[RankRow] = []
    changed: list[str] = []
    for member_id in versions:
        total = spend.get(member_id, 0)
        rank = config.rank_for(total)
        before = held.get(member_id)
        rows.append(RankRow(member_id, total, rank.name, rank.multiplier_pct, before[0] if before else None))
        if before is None or before[:2] != (rank.name, rank.multiplier_pct):
            changed.append(member_id)
    if dry_run:
        return rows
    by_id = {r.member_id: r for r in rows}
    written = 0
    for chunk in chunks(changed, BATCH):
        written += in_retried_transaction(db, functools.partial(_write_ranks, db, config, chunk, by_id, versions,
                                                                as_of, now))  # fmt: skip
    with db.transaction():
        db.execute("INSERT INTO loyalty_runs(job, as_of, members, points, at) VALUES ('ranks', ?, ?, 0, ?)",
                   (as_of.isoformat(), written, now))  # fmt: skip
    return [by_id[r.member_id] for r in rows]


def _write_ranks(db: Central, config: LoyaltyConfig, chunk: list[str], by_id: dict[str, RankRow],
                 versions: dict[str, int], as_of: date, now: float) -> int:  # fmt: skip
    """One chunk of the rank job, inside its transaction; returns the members written. A member merged away
    or erased since the read gets nothing under its old id (the merge moved its rows and computed the golden
    member's, follow_members); one whose version moved (a merge into it, an unmerge) is computed again."""
    live = live_versions(db, chunk)
    changes: list[ChangeTuple] = []
    for member_id in (m for m in chunk if m in live):
        r = by_id[member_id]
        if live[member_id] != versions[member_id]:
            total = spend_by_member(db, as_of, config, member_id).get(member_id, 0)
            rank = config.rank_for(total)
            sent = db.one("SELECT rank, multiplier_pct FROM loyalty_members WHERE member_id = ?", (member_id,))
            r = by_id[member_id] = RankRow(member_id, total, rank.name, rank.multiplier_pct, sent[0] if sent else None)
            if sent is not None and (str(sent[0]), int(sent[1])) == (rank.name, rank.multiplier_pct):
                continue  # the merge (or unmerge) sent this rank already: not twice
        db.execute(
            "INSERT INTO loyalty_members(member_id, rank, multiplier_pct, spend, as_of, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(member_id) DO UPDATE SET rank = excluded.rank,"
            " multiplier_pct = excluded.multiplier_pct, spend = excluded.spend",
            (member_id, r.rank, r.multiplier_pct, r.spend, as_of.isoformat(), now),
        )  # fmt: skip
        result = replay(member_entries(db, member_id), as_of=last_expiry_date(db) or as_of,
                        months=config.expiry_months)  # fmt: skip
        changes.append(loyalty_change(db, config, member_id, result, as_of))
    _send(db, changes, now, as_of)
    return len(changes)


def today_jst(now: float | None = None) -> date:
    return jst_date(now or time.time())


# ---------------------------------------------------------------------------- merges, unmerges, erasures


def follow_members(db: Central, recompute: list[str], gone: list[str], now: float) -> None:
    """``loyalty_members`` after a merge, unmerge or erasure (tenpo.cloud.members.store.register_derived): the
    rows of ids merged away or erased go; each live member in ``recompute`` gets rank, spend and lots computed
    from its ledger and sales as they are now, sent as ``member.loyalty`` (inside the caller's transaction), and
    the expiry entries corrected to what its lots say as of the last expiry run (the balance sent again)."""
    if gone:
        db.execute(f"DELETE FROM loyalty_members WHERE member_id IN ({', '.join('?' for _ in gone)})", gone)
    live = [m for m in recompute if db.one("SELECT 1 FROM members WHERE member_id = ? AND erased = 0", (m,))]
    if not live:
        return
    config = load_config(db)
    as_of = today_jst(now)
    expired_as_of = last_expiry_date(db)
    lots_as_of = expired_as_of or as_of
    held: dict[str, Held] = {}
    changes: list[ChangeTuple] = []
    for member_id in live:
        row = db.one("SELECT rank, multiplier_pct, spend, lots FROM loyalty_members WHERE member_id = ?", (member_id,))
        if row:
            held[member_id] = (str(row[0]), int(row[1]), int(row[2]), str(row[3]))
        spend = spend_by_member(db, as_of, config, member_id).get(member_id, 0)
        rank = config.rank_for(spend)
        result = replay(member_entries(db, member_id), as_of=lots_as_of, months=config.expiry_months)
        due = result.written - result.expired
        if expired_as_of is not None and due:
            # Merged (or apart again), the lots expire as one person's, first in first out over them all: each
            # id's own expiry entries may have taken too much or too little, and the nightly job would not
            # read this member again before a lot ends. Corrected as of the last run, as a late entry is.
            expiry_entry(db, member_id, due, expired_as_of, now)
            changes.append(points_balance_change(db, member_id))
        lots = _lots_data(result)
        db.execute(
            "INSERT INTO loyalty_members(member_id, rank, multiplier_pct, spend, next_end, as_of, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(member_id) DO UPDATE SET rank = excluded.rank,"
            " multiplier_pct = excluded.multiplier_pct, spend = excluded.spend, next_end = excluded.next_end",
            (member_id, rank.name, rank.multiplier_pct, spend, lots[0]["expires_on"] if lots else None,
             as_of.isoformat(), now),
        )  # fmt: skip
        changes.append(loyalty_change(db, config, member_id, result, as_of))
    _send(db, changes, now, as_of, held)


register_derived("loyalty_members", follow_members)
