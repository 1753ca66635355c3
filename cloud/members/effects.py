"""What store events mean for golden members at HQ.

The core planners (tenpo.cloud.effects) own `member.registered`, `member.updated` and `points.entry`,
the sales and visits areas their own events; this area adds follow-ups that run after them
(FOLLOW_UPS) and hang hooks on the plan, which run in the apply transaction once the rows are written:

- a registration (or a store's edit) becomes the store's source record and is resolved against every
  other channel: a store-registered provisional member meets its web-shop twin the first time both
  are seen, and the merge goes down the feed;
- a points entry, store sale or visit made under an id HQ has since merged away is re-pointed to the
  golden member (recorded, so an unmerge moves it back).

A hook never fails the batch: it works inside a savepoint and, if resolution breaks, the member stays
as registered and the reason is logged (the store's events are still applied exactly once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tenpo.cloud.identity import SourceRecord
from tenpo.cloud.plan import ChangeTuple, Origin, Plan, Planner
from tenpo.shared.cleansing import assess_member_record
from tenpo.shared.events import MemberRegistered, MemberUpdated, PointsEntry, to_payload
from tenpo.shared.protocol import Event

from .config import MembersConfig
from .resolve import attach
from .store import (
    Pending,
    balance_data,
    find_source,
    golden_id,
    publish,
    remap_alias_rows,
    row_hash,
    run_derived,
    save_consent,
)

log = logging.getLogger(__name__)

PLANNERS: dict[str, Planner] = {}

_STORE_FIELDS = ("name", "kana", "phone", "email", "card_no")


def iso_utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _guarded(db: Any, name: str, work: Callable[[], list[ChangeTuple]]) -> list[ChangeTuple]:
    db.execute(f"SAVEPOINT {name}")
    try:
        changes = work()
    except Exception:  # resolution is an improvement, never a reason to refuse the store's batch
        db.execute(f"ROLLBACK TO SAVEPOINT {name}")
        db.execute(f"RELEASE SAVEPOINT {name}")
        log.exception("member resolution failed (%s); the member stays as the store registered it", name)
        return []
    db.execute(f"RELEASE SAVEPOINT {name}")
    return changes


def store_record_changes(db: Any, member_id: str, payload: dict[str, Any], now: float) -> list[ChangeTuple]:
    """Resolve a store's record of a member (registration or edit) against every channel."""
    config = MembersConfig()
    target = golden_id(db, member_id)
    if db.scalar("SELECT erased FROM members WHERE member_id = ?", (target,)) != 0:
        return []  # erased (or unknown): nothing to resolve
    existing = find_source(db, "store", member_id)
    raw = {key: payload.get(key) for key in _STORE_FIELDS if isinstance(payload.get(key), str)}
    if existing is not None:  # an edit: the store's record keeps what the edit did not touch
        base = {key: getattr(existing.record, key) for key in _STORE_FIELDS}
        raw = {**{k: v for k, v in base.items() if v}, **raw}
    # The store's form checked them; what still fails is flagged beside the record, as for an import.
    clean, quality = assess_member_record(raw, config.cleansing)
    custom = payload.get("custom") if isinstance(payload.get("custom"), dict) else {}
    clean.update(source="store", source_id=member_id, updated_at=iso_utc(now), custom=custom)
    record = SourceRecord.from_clean({k: v for k, v in clean.items() if k != "prefecture"}, quality)
    consent = payload.get("consent")
    if isinstance(consent, dict):
        save_consent(db, "store", member_id, {str(k): bool(v) for k, v in consent.items()}, now)
    pending = Pending()
    attach(db, record, row_hash([raw, custom, consent]), config, now, pending, member_id=target, actor="store")
    if not pending.events:
        # The core publishes this member's upsert after the hooks ran (so with the golden values): not twice.
        pending.members.discard(member_id)
        changes = pending.materialize(db)
        run_derived(db, pending, now)
        return changes
    # A merge: recorded here, then what the derived tables send because of it (the winner's loyalty), so a
    # store reads the merge first; returned to the core instead, the merge would land after them.
    publish(db, pending, now)
    return []


def _after_member_event(plan: Plan, origin: Origin, event: Event, p: MemberRegistered | MemberUpdated,
                        now: float) -> None:  # fmt: skip
    member_id = p.member_id
    payload = to_payload(p)

    def hook(db: Any, at: float) -> list[ChangeTuple]:
        return _guarded(db, "members_resolve", lambda: store_record_changes(db, member_id, payload, at or time.time()))

    plan.hooks[f"members.resolve:{member_id}"] = hook


def remap_alias_entries(db: Any, member_id: str) -> list[ChangeTuple]:
    """Ledger rows that arrived under a merged-away id move to the golden member (recorded for unmerge)."""
    found = db.one("SELECT member_id, merge_id FROM member_aliases WHERE alias = ?", (member_id,))
    if found is None:
        return []
    golden, merge_id = found[0], int(found[1])
    db.execute("INSERT INTO member_points_moves(ledger_id, merge_id, from_member)"
               " SELECT id, ?, member_id FROM points_ledger WHERE member_id = ?"
               " ON CONFLICT(ledger_id, merge_id) DO NOTHING", (merge_id, member_id))  # fmt: skip
    db.execute("UPDATE points_ledger SET member_id = ? WHERE member_id = ?", (golden, member_id))
    return [("points.balance", golden, None, balance_data(db, golden))]


def _after_points_entry(plan: Plan, origin: Origin, event: Event, p: PointsEntry, now: float) -> None:
    member_id = p.member_id
    if member_id:
        plan.hooks[f"members.alias:{member_id}"] = lambda db, at: _guarded(
            db, "members_alias", lambda: remap_alias_entries(db, member_id))


def _remap_alias_rows(db: Any, member_id: str) -> list[ChangeTuple]:
    remap_alias_rows(db, member_id)
    return []  # sales and visits are HQ's own history: nothing to send to the stores


def _after_member_history(plan: Plan, origin: Origin, event: Event, p: Any, now: float) -> None:
    """A sale or visit that arrives under a merged-away id joins the golden member's history."""
    member_id = p.member_id  # every event type this follows has one (None for a sale without a member)
    if member_id:
        plan.hooks[f"members.alias_rows:{member_id}"] = lambda db, at: _guarded(
            db, "members_alias_rows", lambda: _remap_alias_rows(db, member_id))


# Run after the owning planner of the same event type (see tenpo.cloud.effects.plan_event).
FOLLOW_UPS: dict[str, Planner] = {
    "member.registered": _after_member_event,
    "member.updated": _after_member_event,
    "points.entry": _after_points_entry,
    **dict.fromkeys(("sale.completed", "sale.refunded", "visit.arrived", "visit.left", "zone.entered", "zone.left",
                     "coupon.triggered"), _after_member_history),
}
