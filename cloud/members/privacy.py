"""Looking at, exporting and erasing golden members at HQ. Every view or export of personal data, and
every erasure, is written to the audit log.

Erasure (APPI / GDPR right to be forgotten): the golden record is blanked and kept as a tombstone
(erased = 1) so ledger entries still add up; source records, profile, consent, the merge log's
stashed rows and explanations go; orders keep their amounts and lines but lose the link to the
person; ledger amounts stay under the member's random id, which nothing links to a person any more.
Their reservations and home deliveries lose the name, address and phone, at HQ (rows, feed entries, stored
events: tenpo.cloud.channel.erasure) and at the stores; so do the feed's member records of them and the
stores' registration and edit events HQ stored. Every store receives `member.erase` for the golden id
and every id merged into it. On SQLite the erasure overwrites what it deletes (secure_delete) and empties the
write-ahead log, so the erased values are gone from the file, not only from the tables.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tenpo.cloud.authority import id_store
from tenpo.cloud.changes import audit
from tenpo.cloud.channel.erasure import erase_member_history, erase_reservations
from tenpo.cloud.db import Central
from tenpo.cloud.sales.history import member_sales
from tenpo.cloud.visits.history import erase_member_visits, member_visits
from tenpo.shared.cleansing import MEMBER_FIELDS
from tenpo.shared.errors import UserError
from tenpo.shared.spreadsheet import safe_cell

from .store import Pending, golden_id, member_aliases, member_sources, publish, source_hash

EXPORT_FIELDS = ("member_id", "name", "kana", "email", "phone", "postal_code", "address", "birth_date", "card_no",
                 "points", "sources")  # fmt: skip


def _golden(db: Central, member_id: str) -> dict[str, Any] | None:
    row = db.one(
        "SELECT m.member_id, m.name, m.kana, m.email, m.phone, p.postal_code, p.address, p.birth_date, m.card_no,"
        " m.line_user_id, m.home_store, m.consent, m.custom, m.erased, m.version, p.prefecture, p.provenance,"
        " coalesce(b.balance, 0) FROM members m LEFT JOIN member_profiles p ON p.member_id = m.member_id"
        " LEFT JOIN points_balances b ON b.member_id = m.member_id WHERE m.member_id = ?", (member_id,),
    )  # fmt: skip
    if row is None:
        return None
    keys = ("member_id", "name", "kana", "email", "phone", "postal_code", "address", "birth_date", "card_no",
            "line_user_id", "home_store", "consent", "custom", "erased", "version", "prefecture", "provenance", "points")
    data = dict(zip(keys, row))
    for key in ("consent", "custom", "provenance"):
        data[key] = json.loads(data[key] or "{}")
    data["erased"], data["points"] = bool(data["erased"]), int(data["points"])
    return data


def show_member(db: Central, member_id: str, actor: str = "operator") -> dict[str, Any]:
    """The golden record, its source records, merges with explanations, points, orders, store sales and visits."""
    golden = golden_id(db, member_id)
    data = _golden(db, golden)
    if data is None:
        raise UserError(f"member {member_id}: no such member")
    data["merged_from"] = member_id if golden != member_id else None
    data["sources"] = [
        {"source": r.record.source, "source_id": r.record.source_id, "updated_at": r.record.updated_at,
         "verified": sorted(r.record.verified), "custom": dict(r.record.custom),
         **{name: getattr(r.record, name) for name in MEMBER_FIELDS},
         "field_quality": {name: q.as_json() for name, q in r.record.quality.items()}}
        for r in member_sources(db, golden, with_quality=True)
    ]  # fmt: skip
    merges = db.all(
        "SELECT id, winner, loser, source, source_id, rule, score, matched_fields, explanation, actor, undone, created_at"
        " FROM member_merges WHERE winner = ? OR loser = ? ORDER BY id", (golden, golden),
    )  # fmt: skip
    data["merges"] = [
        {"merge_id": int(m[0]), "winner": m[1], "loser": m[2], "source": f"{m[3]}:{m[4]}" if m[3] else None,
         "rule": m[5], "score": m[6], "matched_fields": json.loads(m[7]), "explanation": json.loads(m[8]).get("text"),
         "actor": m[9], "undone": bool(m[10]), "at": m[11]}
        for m in merges
    ]  # fmt: skip
    data["orders"] = orders_of(db, golden)
    data.update(store_history(db, golden))
    data["ledger"] = [
        {"delta": int(r[0]), "kind": r[1], "ref": r[2], "store_id": r[3], "at": r[4]}
        for r in db.all("SELECT delta, kind, ref, store_id, created_at FROM points_ledger WHERE member_id = ? ORDER BY id",
                        (golden,))  # fmt: skip
    ]
    with db.transaction():
        audit(db, actor, "member.view", golden, {})
    return data


def orders_of(db: Central, member_id: str) -> list[dict[str, Any]]:
    rows = db.all(
        "SELECT o.id, o.order_id, o.channel, o.ordered_at, o.status, o.total, o.points FROM member_orders o"
        " JOIN member_sources s ON s.source = o.source AND s.source_id = o.source_id WHERE s.member_id = ?"
        " ORDER BY o.ordered_at, o.id", (member_id,),
    )  # fmt: skip
    orders = []
    for ref, order_id, channel, at, status, total, points in rows:
        lines = db.all("SELECT sku, jan, name, qty, price FROM member_order_lines WHERE order_ref = ? ORDER BY line_no", (ref,))
        orders.append({"order_id": order_id, "channel": channel, "ordered_at": at, "status": status, "total": int(total),
                       "points": int(points),
                       "lines": [dict(zip(("sku", "jan", "name", "qty", "price"), line)) for line in lines]})  # fmt: skip
    return orders


def store_history(db: Central, member_id: str, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
    """The member's newest store sales and visits. A merge re-points them to the golden id; ids merged
    into it are asked too, for rows a merge made before HQ re-pointed them (or a failed re-point)."""
    also = member_aliases(db, member_id)
    return {
        "sales": [sale.as_json() for sale in member_sales(db, member_id, also=also, limit=limit)],
        "visits": [visit.as_json() for visit in member_visits(db, member_id, also=also, limit=limit)],
    }


def export_members(db: Central, actor: str = "operator") -> Iterator[dict[str, Any]]:
    """Every live golden record with its source records, in member id order (streamed in pages)."""
    with db.transaction():
        audit(db, actor, "member.export", None, {})
    after = ""
    while True:
        ids = [r[0] for r in db.all("SELECT member_id FROM members WHERE erased = 0 AND member_id > ?"
                                    " ORDER BY member_id LIMIT 500", (after,))]  # fmt: skip
        if not ids:
            return
        marks = ", ".join("?" for _ in ids)
        sources: dict[str, list[dict[str, str]]] = {}
        for member, source, source_id in db.all(
            f"SELECT member_id, source, source_id FROM member_sources WHERE member_id IN ({marks}) ORDER BY source, source_id",
            ids,
        ):
            sources.setdefault(member, []).append({"source": source, "source_id": source_id})
        for member in ids:
            golden = _golden(db, member)
            assert golden is not None
            yield {**{k: golden[k] for k in EXPORT_FIELDS if k != "sources"}, "sources": sources.get(member, [])}
        after = ids[-1]


def export_text(records: Iterator[dict[str, Any]], fmt: str) -> Iterator[str]:
    if fmt == "jsonl":
        for record in records:
            yield json.dumps(record, ensure_ascii=False) + "\n"
        return
    buffer = io.StringIO()
    # CRLF (RFC 4180): Python 3.11's writer then quotes a cell holding a CR, which "\n" rows leave bare
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_FIELDS)
    for record in records:
        sources = ";".join(f"{s['source']}:{s['source_id']}" for s in record["sources"])
        # Cells an importing spreadsheet would run as formulas get OWASP's leading quote.
        writer.writerow([*(safe_cell(record[k]) if record[k] is not None else "" for k in EXPORT_FIELDS[:-1]),
                         safe_cell(sources)])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def erase_member(db: Central, member_id: str, reason: str, actor: str = "operator") -> dict[str, Any]:
    """Erase a person at HQ and, through the feed, in every store."""
    if not reason or not reason.strip():
        raise UserError("--reason: say why (the request is kept in the audit log)")
    now = time.time()
    with _overwriting(db), db.transaction():
        golden = golden_id(db, member_id)
        erased = db.scalar("SELECT erased FROM members WHERE member_id = ?", (golden,))
        if erased is None:
            raise UserError(f"member {member_id}: no such member")
        if int(erased):
            raise UserError(f"member {golden} was already erased")
        ids = [golden, *(r[0] for r in db.all("SELECT alias FROM member_aliases WHERE member_id = ? ORDER BY alias", (golden,)))]
        sources = db.all("SELECT source, source_id FROM member_sources WHERE member_id = ?", (golden,))
        erasure = int(db.scalar(
            "INSERT INTO member_erasures(member_id, reason, actor, member_ids, sources_erased, requested_at)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id", (golden, reason.strip(), actor, json.dumps(ids), len(sources), now),
        ))  # fmt: skip
        for source, source_id in sources:
            db.execute("INSERT INTO member_erased_sources(source_hash, erasure_id) VALUES (?, ?)"
                       " ON CONFLICT(source_hash) DO NOTHING", (source_hash(source, source_id), erasure))  # fmt: skip
            db.execute("DELETE FROM member_consents WHERE source = ? AND source_id = ?", (source, source_id))
            db.execute("UPDATE member_orders SET source_id = NULL WHERE source = ? AND source_id = ?", (source, source_id))
        db.execute("DELETE FROM member_blocks WHERE source_ref IN (SELECT id FROM member_sources WHERE member_id = ?)", (golden,))
        db.execute("DELETE FROM member_sources WHERE member_id = ?", (golden,))
        db.execute("DELETE FROM member_profiles WHERE member_id = ?", (golden,))
        db.execute(
            "UPDATE members SET name = NULL, kana = NULL, phone = NULL, email = NULL, card_no = NULL,"
            " line_user_id = NULL, beacon_secret = NULL, consent = '{}', custom = '{}', erased = 1, updated_at = ?"
            " WHERE member_id = ?", (now, golden),
        )  # fmt: skip
        marks = ", ".join("?" for _ in ids)
        # Merge explanations name source ids (an e-mail can be one) and stash the merged rows: scrub both.
        db.execute(f"UPDATE member_merges SET explanation = '{{\"erased\": true}}', loser_row = NULL, loser_sources = '[]',"
                   f" source_id = NULL WHERE winner IN ({marks}) OR loser IN ({marks})", [*ids, *ids])  # fmt: skip
        visits_erased = sum(erase_member_visits(db, i) for i in ids)  # where they were is personal data too
        held = erase_reservations(db, ids, now)  # a 取り置き's customer, an お取り寄せ's address
        store_ids = [str(i) for source, i in sources if source == "store"]
        stores = {s for s in map(id_store, [*ids, *store_ids]) if s is not None}
        history = erase_member_history(db, [*ids, *store_ids], stores)  # the feed's and the stores' copies
        pending = Pending(events=[("member.erase", i, None, {"member_id": i, "version": 0}) for i in ids],
                          gone=set(ids))  # derived rows (loyalty) of every id go too
        publish(db, pending, now)
        db.execute("UPDATE member_erasures SET completed_at = ? WHERE id = ?", (time.time(), erasure))
        audit(db, actor, "member.erase", golden, {"reason": reason.strip(), "erasure_id": erasure, "member_ids": ids,
                                                  "sources": len(sources), "visits": visits_erased,
                                                  "reservations": held, "history": history})  # fmt: skip
    _empty_wal(db)
    return {"erasure_id": erasure, "member_id": golden, "member_ids": ids, "sources_erased": len(sources),
            "visits_erased": visits_erased, "reservations_erased": held["reservations"],
            "deliveries_erased": held["deliveries"]}


@contextmanager
def _overwriting(db: Central) -> Iterator[None]:
    """SQLite: what the erasure deletes or rewrites is overwritten with zeros in its pages, not left in free space."""
    if db.dialect != "sqlite":
        yield
        return
    before = int(db.conn.execute("PRAGMA secure_delete").fetchone()[0])
    db.conn.execute("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        db.conn.execute(f"PRAGMA secure_delete = {before}")


def _empty_wal(db: Central) -> None:
    """SQLite: the pages as they were before the erasure stay in the write-ahead log until it is reused; copy the
    log into the file and empty it now (a reader holding an old snapshot lets it finish at the next checkpoint).
    PostgreSQL keeps old row versions until autovacuum reclaims them (docs/members.md)."""
    if db.dialect == "sqlite":
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
