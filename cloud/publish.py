"""What an applied batch tells the stores: one change-feed entry per member, points balance and stock
level it touched, read and versioned set by set (a few statements per batch, not a few per key).

Part of the apply transaction (cloud/apply.py): the feed entries commit with the effects they describe.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tenpo.cloud.changes import member_record, record_changes
from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple, Plan

CHUNK = 500  # keys per IN (...) list: well under SQLite's and PostgreSQL's parameter limits

T = TypeVar("T")


def _chunks(items: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def publish_changes(db: Central, plan: Plan, now: float, extra: list[ChangeTuple]) -> None:
    """Turn what the plan touched into feed entries and stamp each row with its feed seq (its version)."""
    changes: list[ChangeTuple] = []
    for member_id in sorted(plan.members_touched):
        record = member_record(db, member_id)
        if record is not None:
            changes.append(("member.upsert", member_id, None, record))
    changes += _points_changes(db, sorted(plan.points_touched))
    changes += _stock_changes(db, sorted(plan.stock_touched), now)
    changes += extra
    seqs = record_changes(db, changes, now)
    member_versions: list[tuple[int, str]] = []
    stock_versions: list[tuple[int, str, str]] = []
    for seq, (kind, key, _store, data) in zip(seqs, changes):
        if kind == "member.upsert":
            member_versions.append((seq, key))
        elif kind == "stock.level":  # on_hand itself is kept by the ledger trigger
            stock_versions.append((seq, data["store_id"], data["sku"]))
    db.executemany("UPDATE members SET version = ? WHERE member_id = ?", member_versions)
    _set_stock_versions(db, stock_versions)


def _points_changes(db: Central, members: list[str]) -> list[ChangeTuple]:
    """Each member's balance and, per store that wrote to their ledger, up to which seq it counts."""
    balances: dict[str, int] = {}
    through: dict[str, dict[str, int]] = {}
    for part in _chunks(members):
        balances.update(
            db.all(f"SELECT member_id, balance FROM points_balances WHERE member_id IN ({_marks(len(part))})", part)
        )
        rows = db.all(
            "SELECT DISTINCT l.member_id, s.store_id, s.last_applied_seq FROM points_ledger l"
            f" JOIN stores s ON s.store_id = l.store_id WHERE l.member_id IN ({_marks(len(part))})",
            part,
        )
        for member_id, store_id, seq in rows:
            through.setdefault(member_id, {})[store_id] = int(seq)
    return [
        ("points.balance", m, None, {"member_id": m, "balance": int(balances.get(m) or 0), "through": through.get(m, {})})
        for m in members
    ]


def _stock_changes(db: Central, keys: list[tuple[str, str]], now: float) -> list[ChangeTuple]:
    on_hand: dict[tuple[str, str], int] = {}
    for store_id, skus in _by_store(keys):
        if db.dialect == "postgresql":  # one array parameter: a short statement psycopg parses once, not per batch
            rows = db.all("SELECT sku, on_hand FROM stock_levels WHERE store_id = ? AND sku = ANY(?)", (store_id, skus))
            on_hand.update(((store_id, sku), int(level)) for sku, level in rows)
            continue
        for part in _chunks(skus):
            rows = db.all(
                f"SELECT sku, on_hand FROM stock_levels WHERE store_id = ? AND sku IN ({_marks(len(part))})",
                (store_id, *part),
            )
            on_hand.update(((store_id, sku), int(level)) for sku, level in rows)
    return [
        ("stock.level", f"{store_id}/{sku}", None,
         {"store_id": store_id, "sku": sku, "on_hand": on_hand.get((store_id, sku), 0), "as_of": now, "version": 0})
        for store_id, sku in keys
    ]  # fmt: skip


def _by_store(keys: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    grouped: dict[str, list[str]] = {}
    for store_id, sku in keys:
        grouped.setdefault(store_id, []).append(sku)
    return list(grouped.items())


def _set_stock_versions(db: Central, versions: list[tuple[int, str, str]]) -> None:
    if not versions:
        return
    if db.dialect == "postgresql":  # one statement for the batch: three arrays, joined back to the rows
        columns: list[Any] = [list(column) for column in zip(*versions)]
        db.execute(
            "UPDATE stock_levels SET version = v.version"
            " FROM unnest(?::bigint[], ?::text[], ?::text[]) AS v(version, store_id, sku)"
            " WHERE stock_levels.store_id = v.store_id AND stock_levels.sku = v.sku",
            columns,
        )
        return
    db.executemany("UPDATE stock_levels SET version = ? WHERE store_id = ? AND sku = ?", versions)
