"""Identity resolution at HQ, one arriving record at a time: attach, merge, unmerge.

A record (an import row, a store's registration) is compared with the records sharing a blocking key
(`match_one`); the golden members it links to are then checked together with `resolve`, which applies
the household guard across all their records, and joined into the oldest of them. Every join is
written to `member_merges` with its rule, score and field comparisons; a member merge moves source
records, re-points ledger rows (amounts never change) and every other area's rows with a member_id
(store sales, visits), and can be undone exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tenpo.cloud.changes import audit
from tenpo.cloud.db import Central
from tenpo.cloud.identity import (
    MergeDecision,
    SourceRecord,
    decide,
    match_one,
    match_person,
    name_clashes,
    resolve,
)
from tenpo.shared.errors import UserError

from .access import MemberAccess, decision_json
from .config import MembersConfig
from .store import (
    Pending,
    SourceRow,
    create_member,
    find_source,
    member_sources,
    move_member_rows,
    new_member_id,
    refresh_golden,
    restore_member_rows,
)

MEMBER_ROW = ("member_id", "name", "kana", "phone", "email", "card_no", "line_user_id", "beacon_secret", "consent",
              "custom", "home_store", "created_at", "updated_at")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Attached:
    """What happened to one arriving record: created, updated, merged or unchanged, and its golden id."""

    status: str
    member_id: str
    merged: tuple[str, ...] = ()  # golden ids merged away because of this record
    link: str = ""  # the explanation of the link taken, when it joined an existing member


def attach(db: Central, record: SourceRecord, raw_hash: str, config: MembersConfig, now: float, pending: Pending, *,
           prefecture: str | None = None, member_id: str | None = None, actor: str = "import",
           tables: MemberAccess | None = None) -> Attached:
    """Store `record` and join it to the golden member it belongs to. `member_id`: the golden member the
    record already has (a store's provisional member, which the core planner just inserted). `tables`:
    how the members tables are read and written (an import's chunk); straight from the database by default."""
    t = tables or MemberAccess(db, config, now)
    existing = t.find_source(record.key)
    if existing is not None and existing.raw_hash == raw_hash:
        return Attached("unchanged", existing.member_id)
    own = existing.member_id if existing else member_id
    status = "updated" if existing else "created"
    targets = _targets(t, record, existing, own, config)
    if not targets:
        if own is None:
            own = new_member_id()
            t.create_member(own)
        t.save_source(record, own, raw_hash, prefecture, existing)
        t.refresh(own)
        pending.members.add(own)
        return Attached(status, own)

    everyone = ([own] if own else []) + list(targets)
    host = t.oldest(everyone)
    if len(everyone) > 1:
        t.before_merge(everyone)  # the golden records as they stand, before this record joins one of them
    if own is None:
        t.save_source(record, host, raw_hash, prefecture, existing)
        t.log_link(host, record, targets[host], actor)
        own = host
    else:
        t.save_source(record, own, raw_hash, prefecture, existing)
    merged = []
    for other in everyone:
        if other != host:
            decision = targets.get(other) or targets[host]
            t.before_merge((host, other))
            merge_members(db, host, other, decision, actor, config, now, pending)
            t.merged(host, other)
            merged.append(other)
    t.refresh(host)
    pending.members.add(host)
    link = targets[host].explain() if host in targets else targets[next(iter(targets))].explain()
    return Attached("merged", host, tuple(merged), link)


def _targets(t: MemberAccess, record: SourceRecord, existing: SourceRow | None, own: str | None,
             config: MembersConfig) -> dict[str, MergeDecision]:
    """Golden members (other than `own`) the record links to, with the best link to each, oldest first.
    Possible matches go to the review queue; members holding a record a person rejected are never targets."""
    found = t.candidates(record, existing.ref if existing else None)
    if not found:
        return {}
    member_of = {row.record.key: row.member_id for row in found}
    blocked = t.unmerged_with(record, own) | t.rejected_members(record.key)
    matched = match_one(record, [row.record for row in found], config.match)
    t.queue_possible([d for d in matched.possible if member_of[d.right] not in (own, *blocked)])
    targets: dict[str, MergeDecision] = {}
    for decision in matched.accepted:
        member = member_of[decision.right]
        if member != own and member not in targets and member not in blocked:
            targets[member] = decision
    # No single record links, but a person's records may together (a kana name here, the phone there).
    people: dict[str, list[SourceRecord]] = {}
    for row in found:
        if row.member_id not in targets and row.member_id != own and row.member_id not in blocked:
            people.setdefault(row.member_id, []).append(row.record)
    for member, records in people.items():
        if len(records) > 1 and (link := match_person(record, records, config.match, matched.compared)):
            targets[member] = link
    if not targets:
        return {}
    # match_one sees single records; the household guard needs every record of each person at once.
    records_of = {member: t.member_sources(member) for member in [*targets, *([own] if own else [])]}
    if len(targets) == 1 and own is None:
        # Joining one person: resolve below would only refuse it for a name clashing with one of theirs.
        ((member, rows),) = records_of.items()
        return {} if name_clashes(record, [row.record for row in rows], config.match) else targets
    group = {record.key: record}
    for rows in records_of.values():
        group.update((row.record.key, row.record) for row in rows if row.record.key != record.key)
    cluster_of = resolve(list(group.values()), config.match).cluster_of()
    mine = cluster_of[record.key]
    kept = {}
    for member, decision in targets.items():
        if any(cluster_of[row.record.key] == mine for row in records_of[member]):
            kept[member] = decision
    return kept


def _live(db: Central, member_id: str) -> None:
    alias = db.scalar("SELECT member_id FROM member_aliases WHERE alias = ?", (member_id,))
    if alias:
        raise UserError(f"member {member_id} was merged into {alias}")
    erased = db.scalar("SELECT erased FROM members WHERE member_id = ?", (member_id,))
    if erased is None:
        raise UserError(f"member {member_id}: no such member")
    if int(erased):
        raise UserError(f"member {member_id} was erased")


def lock_people(db: Central, members: list[str]) -> None:
    """PostgreSQL: hold the members' rows, then their balance rows, in member_id order, before points or
    history move between them: the loyalty jobs take the same locks in the same order around each chunk's read
    and write (tenpo.cloud.loyalty.locking), so neither sees the other half done. SQLite: one writer already."""
    if db.dialect != "postgresql":
        return
    marks = ", ".join("?" for _ in members)
    for table in ("members", "points_balances"):
        db.all(f"SELECT member_id FROM {table} WHERE member_id IN ({marks}) ORDER BY member_id FOR UPDATE", members)


def merge_members(db: Central, winner: str, loser: str, decision: MergeDecision | None, actor: str,
                  config: MembersConfig, now: float, pending: Pending) -> int:
    """Merge `loser` into `winner`: its records, ledger rows and later entries under its id. Returns the merge id."""
    if winner == loser:
        raise UserError(f"member {winner}: cannot merge a member with itself")
    lock_people(db, [winner, loser])
    _live(db, winner)
    _live(db, loser)
    found = db.one(f"SELECT {', '.join(MEMBER_ROW)} FROM members WHERE member_id = ?", (loser,))
    assert found is not None  # _live(loser) above: the member is there, and locked
    row = dict(zip(MEMBER_ROW, found))
    sources = [[s, sid] for s, sid in db.all("SELECT source, source_id FROM member_sources WHERE member_id = ?", (loser,))]
    explanation = decision_json(decision) if decision else {"text": f"{loser} = {winner} by manual ({actor})"}
    rule = decision.rule if decision else "manual"
    merge_id = int(db.scalar(
        "INSERT INTO member_merges(winner, loser, rule, score, matched_fields, explanation, loser_row, loser_sources,"
        " actor, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (winner, loser, rule, decision.score if decision else None,
         json.dumps(decision.matched_fields if decision else []), json.dumps(explanation, ensure_ascii=False),
         json.dumps(row, ensure_ascii=False, default=str), json.dumps(sources, ensure_ascii=False), actor, now),
    ))  # fmt: skip
    db.execute("UPDATE member_sources SET member_id = ? WHERE member_id = ?", (winner, loser))
    db.execute("INSERT INTO member_points_moves(ledger_id, merge_id, from_member)"
               " SELECT id, ?, member_id FROM points_ledger WHERE member_id = ?", (merge_id, loser))  # fmt: skip
    db.execute("UPDATE points_ledger SET member_id = ? WHERE member_id = ?", (winner, loser))
    move_member_rows(db, merge_id, loser, winner)  # store sales, visits, coupons, ...: the person's whole history
    db.execute("UPDATE member_aliases SET member_id = ? WHERE member_id = ?", (winner, loser))
    db.execute("INSERT INTO member_aliases(alias, member_id, merge_id) VALUES (?, ?, ?)", (loser, winner, merge_id))
    db.execute("UPDATE members SET line_user_id = coalesce(line_user_id, ?) WHERE member_id = ?", (row["line_user_id"], winner))
    db.execute("DELETE FROM members WHERE member_id = ?", (loser,))
    db.execute("DELETE FROM member_profiles WHERE member_id = ?", (loser,))
    refresh_golden(db, winner, config, now)
    pending.events.append(("member.merge", winner, None, {"winner": winner, "losers": [loser], "merge_id": merge_id}))
    pending.members.add(winner)
    pending.balances.add(winner)
    pending.recompute.add(winner)  # derived rows (loyalty): the winner's computed again, the loser's dropped
    pending.gone.add(loser)
    audit(db, actor, "member.merge", winner, {"loser": loser, "merge_id": merge_id, "rule": rule})
    return merge_id


def manual_merge(db: Central, winner: str, loser: str, config: MembersConfig, now: float, pending: Pending,
                 actor: str = "operator") -> int:
    """A clerk's merge: explained by how the two golden records compare, recorded with rule "manual"."""
    _live(db, winner)
    _live(db, loser)
    left, right = _golden_as_record(db, winner), _golden_as_record(db, loser)
    compared = decide(left, right, left.key, right.key, config.match)
    decision = MergeDecision(left.key, right.key, "manual", compared.score, compared.comparisons)
    return merge_members(db, winner, loser, decision, actor, config, now, pending)


def _golden_as_record(db: Central, member_id: str) -> SourceRecord:
    row = db.one("SELECT m.name, m.kana, m.email, m.phone, p.postal_code, p.address, p.birth_date, m.card_no"
                 " FROM members m LEFT JOIN member_profiles p ON p.member_id = m.member_id WHERE m.member_id = ?",
                 (member_id,))  # fmt: skip
    assert row is not None
    fields = ("name", "kana", "email", "phone", "postal_code", "address", "birth_date", "card_no")
    return SourceRecord("golden", member_id, **dict(zip(fields, row)))


def unmerge(db: Central, target: str, config: MembersConfig, now: float, pending: Pending,
            actor: str = "operator") -> dict[str, Any]:
    """Undo the merge of member `target` (a merged-away id), or detach source record "SOURCE:SOURCE_ID"."""
    found = db.one("SELECT id, winner, loser_row, loser_sources FROM member_merges WHERE loser = ? AND undone = 0"
                   " ORDER BY id DESC LIMIT 1", (target,))  # fmt: skip
    if found is None:
        source, sep, source_id = target.partition(":")
        if sep and find_source(db, source, source_id):
            return _detach(db, source, source_id, config, now, pending, actor)
        merged = [r[0] for r in db.all("SELECT loser FROM member_merges WHERE winner = ? AND undone = 0"
                                       " AND loser IS NOT NULL ORDER BY id", (target,))]  # fmt: skip
        hint = f"; ids merged into it: {', '.join(merged)}" if merged else ""
        raise UserError(f"member {target} is not a merged-away id{hint} (or give SOURCE:SOURCE_ID to detach a record)")
    merge_id, winner, loser_row, loser_sources = int(found[0]), found[1], json.loads(found[2]), json.loads(found[3])
    lock_people(db, [winner, target])
    _live(db, winner)
    row = {**loser_row, "version": 0, "erased": 0, "updated_at": now}
    columns = [*MEMBER_ROW, "version", "erased"]
    db.execute(f"INSERT INTO members({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
               [row[c] for c in columns])  # fmt: skip
    for source, source_id in loser_sources:
        db.execute("UPDATE member_sources SET member_id = ? WHERE member_id = ? AND source = ? AND source_id = ?",
                   (target, winner, source, source_id))  # fmt: skip
    db.execute("UPDATE points_ledger SET member_id = ? WHERE member_id = ? AND id IN"
               " (SELECT ledger_id FROM member_points_moves WHERE merge_id = ?)", (target, winner, merge_id))  # fmt: skip
    restore_member_rows(db, merge_id, winner)
    db.execute("DELETE FROM member_aliases WHERE alias = ?", (target,))
    db.execute("UPDATE member_aliases SET member_id = ? WHERE merge_id IN"
               " (SELECT id FROM member_merges WHERE winner = ? AND undone = 0)", (target, target))  # fmt: skip
    db.execute("UPDATE member_merges SET undone = 1, undone_at = ? WHERE id = ?", (now, merge_id))
    pending.gone.discard(target)
    for member in (winner, target):
        refresh_golden(db, member, config, now)
        pending.members.add(member)
        pending.balances.add(member)
        pending.recompute.add(member)
    pending.events.append(("member.unmerge", winner, None, {"winner": winner, "loser": target, "merge_id": merge_id}))
    audit(db, actor, "member.unmerge", winner, {"loser": target, "merge_id": merge_id})
    return {"merge_id": merge_id, "winner": winner, "restored": target}


def _detach(db: Central, source: str, source_id: str, config: MembersConfig, now: float, pending: Pending,
            actor: str) -> dict[str, Any]:
    """Take one source record out of its golden member into a new one (its orders and their points follow)."""
    row = find_source(db, source, source_id)
    assert row is not None
    old = row.member_id
    lock_people(db, [old])
    if len(member_sources(db, old)) < 2:
        raise UserError(f"{source}:{source_id} is the only record of member {old}: nothing to detach")
    new = new_member_id()
    create_member(db, new, None, now)
    db.execute("UPDATE member_sources SET member_id = ? WHERE id = ?", (new, row.ref))
    db.execute("UPDATE points_ledger SET member_id = ? WHERE member_id = ? AND store_id = ? AND ref IN"
               " (SELECT 'order:' || channel || ':' || order_id FROM member_orders WHERE source = ? AND source_id = ?)",
               (new, old, f"channel:{source}", source, source_id))  # fmt: skip
    db.execute("UPDATE member_merges SET undone = 1, undone_at = ? WHERE source = ? AND source_id = ? AND undone = 0",
               (now, source, source_id))  # fmt: skip
    # Remember the separation even when the record had been attached without a logged link.
    db.execute("INSERT INTO member_merges(winner, source, source_id, rule, actor, undone, created_at, undone_at)"
               " VALUES (?, ?, ?, 'detached', ?, 1, ?, ?)", (old, source, source_id, actor, now, now))  # fmt: skip
    for member in (old, new):
        refresh_golden(db, member, config, now)
        pending.members.add(member)
        pending.balances.add(member)
        pending.recompute.add(member)
    audit(db, actor, "member.detach", old, {"source": source, "new_member": new})
    return {"detached": f"{source}:{source_id}", "from": old, "member_id": new}
