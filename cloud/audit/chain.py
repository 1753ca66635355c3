"""HQ's audit log as a hash chain (issue 14): sealing new rows, verifying the chain, and "who looked at
this customer" (APPI 開示請求).

Every writer inserts its row through one function (``tenpo.cloud.changes.audit``, or the event planners'
``INSERT_AUDIT``) and asks for :func:`seal` to run just before COMMIT (``Central.before_commit``). The
seal takes the chain's lock, the ``audit_chain_head`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
already holds its write lock from ``BEGIN IMMEDIATE``), then gives every row not yet chained its position
and hashes, in id order. Several aggregators and operator commands committing at once therefore never
fork the chain: the second waits for the first's commit and chains after it.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterator
from typing import Any

from tenpo.cloud.audit.schema import AUDIT_FIELDS
from tenpo.cloud.db import Central
from tenpo.shared.audit_chain import StoredRow, Verdict, next_link, verify

# The operator signed in for this command or monitor session; ``audit`` writes them instead of the
# generic actor ("operator", "hq-operator") the area functions pass.
ACTING_OPERATOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenpo_acting_operator", default=None)
GENERIC_ACTORS = frozenset({"operator", "hq-operator", "hq"})


_process_operator: list[str] = []  # the HQ monitor's signed-in operator, for its worker threads (one per process)


def act_for_process(name: str) -> None:
    """The HQ monitor after sign-in: every audit row this process writes with a generic actor names ``name``."""
    _process_operator[:] = [name]


def actor_name(actor: str) -> str:
    acting = ACTING_OPERATOR.get() or (_process_operator[0] if _process_operator else None)
    generic = actor in GENERIC_ACTORS or actor.startswith("hq:")
    return f"op:{acting}" if acting and generic else actor


def seal(db: Central) -> None:
    """Chain every row not chained yet; call inside the transaction that wrote them (via before_commit)."""
    head = db.one("SELECT seq, row_hash FROM audit_chain_head WHERE chain = 'hq'" + db.lock_suffix())
    if head is None:  # a database before migration 11 (a test that builds its own schema): nothing to chain
        return
    seq, last = int(head[0]), head[1]
    rows = db.all(f"SELECT {', '.join(AUDIT_FIELDS)} FROM audit_log WHERE row_hash IS NULL ORDER BY id")
    for row in rows:
        link = next_link(seq, last, row)
        db.execute("UPDATE audit_log SET chain_seq = ?, prev_hash = ?, row_hash = ? WHERE id = ?",
                   (link.seq, link.prev_hash, link.row_hash, row[0]))  # fmt: skip
        seq, last = link.seq, link.row_hash
    if rows:
        db.execute("UPDATE audit_chain_head SET seq = ?, row_hash = ? WHERE chain = 'hq'", (seq, last))


def seal_hook(db: Central, now: float) -> list[Any]:
    """For an event plan (cloud/plan.py hooks): the planners' audit rows are sealed at commit."""
    db.before_commit(seal)
    return []


def _stored(db: Central, batch: int = 5000) -> Iterator[StoredRow]:
    """Rows in chain order, then any row with no position (inserted around the audit function)."""
    after = -1
    cols = f"{', '.join(AUDIT_FIELDS)}, chain_seq, prev_hash, row_hash"
    while True:
        rows = db.all(f"SELECT {cols} FROM audit_log WHERE chain_seq > ? ORDER BY chain_seq LIMIT ?", (after, batch))
        for r in rows:
            yield StoredRow(int(r[0]), int(r[6]), tuple(r[:6]), r[7], r[8])
        if len(rows) < batch:
            break
        after = int(rows[-1][6])
    for r in db.all(f"SELECT {cols} FROM audit_log WHERE chain_seq IS NULL ORDER BY id"):
        yield StoredRow(int(r[0]), None, tuple(r[:6]), r[7], r[8])


def verify_chain(db: Central) -> Verdict:
    head = db.one("SELECT seq, row_hash FROM audit_chain_head WHERE chain = 'hq'")
    expected = None if head is None else (int(head[0]), head[1] or "0" * 64)
    return verify(_stored(db), expected)


def member_ids(db: Central, member_id: str) -> list[str]:
    """The id asked for and every id merged into it (or it into), so a merged person's history is whole."""
    ids = {member_id}
    for _ in range(5):  # merges of merges: a few rounds reach every id
        marks = ", ".join("?" * len(ids))
        found = db.all(f"SELECT winner, loser FROM member_merges WHERE winner IN ({marks}) OR loser IN ({marks})",
                       (*ids, *ids))  # fmt: skip
        more = {str(x) for row in found for x in row if x} - ids
        if not more:
            break
        ids |= more
    return sorted(ids)


def who_looked(db: Central, member_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    """Every audit row about this member: clerks' views and exports in the stores (member.viewed, synced
    to HQ) and HQ operators' shows, merges, erasures; the newest first."""
    ids = member_ids(db, member_id)
    marks = ", ".join("?" * len(ids))
    rows = db.all(f"SELECT id, actor, action, subject, detail, at, chain_seq FROM audit_log WHERE subject IN ({marks})"
                  " OR (action = 'member.export' AND subject IS NULL) ORDER BY at DESC, id DESC LIMIT ?",
                  (*ids, limit))  # fmt: skip
    out = []
    for r in rows:
        actor = str(r[1])
        store, _, clerk = actor.partition("/") if "/" in actor else ("", "", "")
        out.append({"id": int(r[0]), "at": float(r[5]), "actor": actor, "where": store or "HQ", "clerk": clerk or None,
                    "action": r[2], "member_id": r[3], "detail": _detail(r[4]), "chain_seq": r[6]})  # fmt: skip
    return out


def _detail(text: Any) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return text
