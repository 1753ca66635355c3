"""Store authority in the apply transaction: look up the facts the rules need, record what they refuse.

One pass over a batch before it is planned (tenpo.cloud.apply). The common events (stock, sales, a
store's own members) cost a type test each; a batch costs one indexed read of the points entries
still waiting for their sale, a batch with answers to reservations one read of their rows.
Everything written here (held entries, alerts, counted edits) is in the batch's transaction, so a
batch applied again after a rollback decides the same way.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any

from tenpo.cloud.authority import (
    RESERVATION_ANSWERS,
    SALE_TYPES,
    AuthorityConfig,
    Refusal,
    changed_fields,
    id_store,
    judge_member_update,
    judge_points_alone,
    judge_points_group,
    no_sale,
    registered_by,
)
from tenpo.cloud.changes import audit
from tenpo.cloud.channel.reservations import OwnerCheck
from tenpo.cloud.db import Central
from tenpo.cloud.plan import Decoded, Origin
from tenpo.shared.events import PayloadMismatch, PointsEntry, SaleCompleted, UnknownEvent, decode_payload
from tenpo.shared.protocol import Event

log = logging.getLogger(__name__)

SETTING = "authority.rules"  # member_settings row: a JSON object of AuthorityConfig fields
_CONFIG_TTL_S = 30.0
_config_cache: dict[int, tuple[float, AuthorityConfig]] = {}


@dataclass(slots=True)
class Verdicts:
    """What the pass decided for one batch of ``origin``'s events."""

    refused: dict[int, Refusal] = field(default_factory=dict)  # seq of this batch -> why
    held: set[int] = field(default_factory=set)  # seqs of this batch waiting for their sale
    released: list[tuple[Origin, Event]] = field(default_factory=list)  # earlier held entries, allowed now
    late_refused: list[tuple[Event, Refusal]] = field(default_factory=list)  # earlier held entries, refused now
    cleared: list[tuple[str, int]] = field(default_factory=list)  # (stream, seq) of held entries decided now

    def skip(self, seq: int) -> bool:
        return seq in self.held or seq in self.refused


@dataclass(slots=True)
class _Waiting:
    seq: int
    event: Event
    entry: PointsEntry
    held: bool  # from an earlier batch (a row in authority_held)
    stream: str


def config(db: Central) -> AuthorityConfig:
    """The chain's authority settings (member_settings ``authority.rules``), read at most every 30 s."""
    now = time.monotonic()
    cached = _config_cache.get(id(db))
    if cached is not None and now - cached[0] < _CONFIG_TTL_S:
        return cached[1]
    value = db.scalar("SELECT value FROM member_settings WHERE name = ?", (SETTING,))
    result = parse_config(value)
    _config_cache[id(db)] = (now, result)
    return result


def parse_config(text: str | None) -> AuthorityConfig:
    """Unknown keys and values that are not positive whole numbers keep the default (logged)."""
    result = AuthorityConfig()
    if not text:
        return result
    try:
        data = json.loads(text)
    except ValueError:
        log.warning("%s: not JSON; the default authority rules apply", SETTING)
        return result
    known = {f.name for f in fields(AuthorityConfig)}
    good = {k: v for k, v in data.items() if k in known and isinstance(v, int) and not isinstance(v, bool) and v > 0}
    if len(good) != len(data):
        log.warning("%s: ignored %s", SETTING, sorted(set(data) - set(good)))
    return replace(result, **good)


def save_config(db: Central, settings: AuthorityConfig, actor: str) -> None:
    value = json.dumps({f.name: getattr(settings, f.name) for f in fields(AuthorityConfig)})
    with db.transaction():
        db.execute("DELETE FROM member_settings WHERE name = ?", (SETTING,))
        db.execute("INSERT INTO member_settings(name, value, updated_by, updated_at) VALUES (?, ?, ?, ?)",
                   (SETTING, value, actor, time.time()))  # fmt: skip
        audit(db, actor, "authority.set", SETTING, json.loads(value))
    _config_cache.pop(id(db), None)


def _decode(event: Event, decoded: Decoded | None = None) -> Any:
    if decoded is not None:
        return decoded.get(id(event))  # absent: it did not decode
    try:
        return decode_payload(event.type, event.schema, event.payload)
    except (UnknownEvent, PayloadMismatch):
        return None  # the planner dead-letters it, naming the field


def check_batch(db: Central, origin: Origin, events: list[Event], now: float, decoded: Decoded | None = None) -> Verdicts:
    """Decide every event of the batch that the authority rules cover, and record the decisions.
    ``decoded``: the batch's payloads (plan.decode_each), which the planners read too."""
    verdicts = Verdicts()
    store = origin.store_id
    waiting: dict[str, list[_Waiting]] = {}
    if any(e.type == "points.entry" or e.type in SALE_TYPES for e in events):
        held_rows = db.all("SELECT stream, seq, event_id, hlc, payload FROM authority_held WHERE store_id = ?"
                           " ORDER BY seq", (store,))  # fmt: skip
    else:
        held_rows = []  # nothing here can release or add one: held entries wait for a batch that can
    for row in held_rows:
        event = Event(int(row[1]), row[2], "points.entry", 1, int(row[3]), json.loads(row[4]))
        entry = _decode(event)
        if entry is None or row[0] != origin.stream:
            verdicts.cleared.append((row[0], event.seq))
            verdicts.late_refused.append((event, Refusal("points-link", f"points entry {event.seq} of stream {row[0]}:"
                                                         " its sale never came (the store's stream ended)")))
            continue
        waiting.setdefault(entry.ref, []).append(_Waiting(event.seq, event, entry, True, row[0]))
    settings: AuthorityConfig | None = None
    edits: int | None = None
    owned: OwnerCheck | None = None  # the reservations the batch answers, read at its first answer
    for event in events:
        kind = event.type
        if waiting:
            settings = settings or config(db)
            _expire(store, waiting, event.seq, settings.link_window, verdicts)
        if kind == "points.entry":
            entry = _decode(event, decoded)
            if entry is None:
                continue
            refusal = judge_points_alone(store, entry)
            if refusal is not None:
                verdicts.refused[event.seq] = refusal
            else:
                waiting.setdefault(entry.ref, []).append(_Waiting(event.seq, event, entry, False, origin.stream))
        elif kind in SALE_TYPES and waiting:
            receipt = event.payload.get("receipt_no") if isinstance(event.payload, dict) else None
            group = waiting.pop(receipt, None) if isinstance(receipt, str) else None
            if group:
                settings = settings or config(db)
                _judge_group(origin, _decode(event, decoded), group, settings, verdicts)
        elif kind in RESERVATION_ANSWERS:
            answer = _decode(event, decoded)
            if answer is None:
                continue
            owned = owned or OwnerCheck(db, events)
            refusal = owned.refusal(store, kind, answer.reservation_id, getattr(answer, "to_store", None))
            if refusal is not None:
                verdicts.refused[event.seq] = refusal
        elif kind == "member.updated":
            update = _decode(event, decoded)
            if update is None:
                continue
            owners = _owners(db, store, update.member_id)
            if store in owners:
                continue
            if edits is None:
                edits = int(db.scalar("SELECT count(*) FROM authority_edits WHERE store_id = ? AND at > ?",
                                      (store, now - 3600.0), 0))  # fmt: skip
            settings = settings or config(db)
            refusal = judge_member_update(store, update, owners, edits, settings)
            if refusal is not None:
                verdicts.refused[event.seq] = refusal
                continue
            edits += 1
            db.execute("INSERT INTO authority_edits(store_id, edited_id, clerk_id, fields, event_seq, at)"
                       " VALUES (?, ?, ?, ?, ?, ?)",
                       (store, update.member_id, update.clerk_id, ",".join(changed_fields(update)), event.seq, now))  # fmt: skip
    if waiting and events:
        _expire(store, waiting, events[-1].seq, (settings or config(db)).link_window, verdicts)
    _record(db, origin, waiting, verdicts, now)
    return verdicts


def _owners(db: Central, store: str, member_id: str) -> frozenset[str]:
    """The stores that registered the member; the store's own provisional id needs no lookup."""
    if id_store(member_id) == store:
        return frozenset({store})
    golden = str(db.scalar("SELECT member_id FROM member_aliases WHERE alias = ?", (member_id,), member_id))
    sources = [r[0] for r in db.all("SELECT source_id FROM member_sources WHERE member_id = ? AND source = 'store'",
                                    (golden,))]  # fmt: skip
    return registered_by(member_id, golden, sources)


def _expire(store: str, waiting: dict[str, list[_Waiting]], seq: int, window: int, verdicts: Verdicts) -> None:
    """Entries whose sale did not come within ``window`` events of the stream are refused."""
    for ref in list(waiting):
        late = [w for w in waiting[ref] if w.seq + window < seq]
        if not late:
            continue
        for w in late:
            _refuse(w, no_sale(store, w.entry, window), verdicts)
        waiting[ref] = [w for w in waiting[ref] if w.seq + window >= seq]
        if not waiting[ref]:
            del waiting[ref]


def _refuse(w: _Waiting, refusal: Refusal, verdicts: Verdicts) -> None:
    if w.held:
        verdicts.late_refused.append((w.event, refusal))
        verdicts.cleared.append((w.stream, w.seq))
    else:
        verdicts.refused[w.seq] = refusal


def _judge_group(origin: Origin, sale: SaleCompleted | None, group: list[_Waiting], settings: AuthorityConfig,
                 verdicts: Verdicts) -> None:  # fmt: skip
    if sale is None:  # the sale itself is a dead letter: nothing vouches for its entries
        for w in group:
            _refuse(w, no_sale(origin.store_id, w.entry, settings.link_window), verdicts)
        return
    answers = judge_points_group(origin.store_id, sale, [w.entry for w in group], settings)
    for w, refusal in zip(group, answers, strict=True):
        if refusal is not None:
            _refuse(w, refusal, verdicts)
        elif w.held:
            verdicts.released.append((Origin(origin.store_id, w.stream), w.event))
            verdicts.cleared.append((w.stream, w.seq))


def _record(db: Central, origin: Origin, waiting: dict[str, list[_Waiting]], verdicts: Verdicts, now: float) -> None:
    store = origin.store_id
    new_held = [w for group in waiting.values() for w in group if not w.held]
    for w in new_held:
        verdicts.held.add(w.seq)
    if new_held:
        db.executemany(
            "INSERT INTO authority_held(store_id, stream, seq, event_id, hlc, ref, payload, held_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store_id, stream, seq) DO NOTHING",
            [(store, w.stream, w.seq, w.event.id, w.event.hlc, w.entry.ref, json.dumps(w.event.payload), now)
             for w in new_held],
        )  # fmt: skip
    if verdicts.cleared:
        db.executemany("DELETE FROM authority_held WHERE store_id = ? AND stream = ? AND seq = ?",
                       [(store, stream, seq) for stream, seq in verdicts.cleared])  # fmt: skip
    refusals = [(seq, r) for seq, r in verdicts.refused.items()] + [(e.seq, r) for e, r in verdicts.late_refused]
    if refusals:
        for seq, refusal in refusals:
            log.warning("authority: store %s event %d %s", store, seq, refusal)
        db.executemany("INSERT INTO authority_alerts(store_id, rule, event_seq, detail, at) VALUES (?, ?, ?, ?, ?)",
                       [(store, r.rule, seq, r.detail, now) for seq, r in refusals])  # fmt: skip


def refusals_by_store(db: Central, since: float) -> dict[str, int]:
    """Authority refusals per store since ``since`` (the HQ monitor's alert)."""
    rows = db.all("SELECT store_id, count(*) FROM authority_alerts WHERE at >= ? GROUP BY store_id", (since,))
    return {str(r[0]): int(r[1]) for r in rows}


def recent_refusals(db: Central, limit: int = 50, store_id: str | None = None) -> list[tuple[Any, ...]]:
    """(at, store_id, rule, event_seq, detail), newest first."""
    where, params = ("WHERE store_id = ?", (store_id,)) if store_id else ("", ())
    return db.all(f"SELECT at, store_id, rule, event_seq, detail FROM authority_alerts {where}"
                  " ORDER BY id DESC LIMIT ?", (*params, limit))  # fmt: skip
