"""Serve the downstream change feed and bootstrap snapshots from the central database."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import msgspec

from tenpo.cloud import beacons
from tenpo.cloud.db import Central
from tenpo.cloud.loyalty.snapshot import loyalty_rows
from tenpo.shared.gc_pause import gc_paused
from tenpo.shared.protocol import SNAPSHOT_ENTITIES, Change, ChangePage, SnapshotChunk, SnapshotRequest

MAX_PAGE = 5000
MAX_CHUNK = 20000


def latest_change(db: Central) -> int:
    return int(db.scalar("SELECT value FROM counters WHERE name = 'change'", (), 0))


def changes_after(db: Central, cursor: int, limit: int, store_id: str | None = None) -> ChangePage:
    """Changes after ``cursor`` for ``store_id`` (None: every change, for the broadcast topic)."""
    limit = max(1, min(limit, MAX_PAGE))
    latest = latest_change(db)
    if store_id is None:
        rows = db.all(
            "SELECT seq, kind, key, store_id, data FROM changes WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (cursor, latest, limit),
        )
    else:
        rows = db.all(
            "SELECT seq, kind, key, store_id, data FROM changes WHERE seq > ? AND seq <= ?"
            " AND (store_id IS NULL OR store_id = ?) ORDER BY seq LIMIT ?",
            (cursor, latest, store_id, limit),
        )
    changes = [Change(seq, kind, key, json.loads(data), store) for seq, kind, key, store, data in rows]
    to_seq = changes[-1].seq if len(changes) == limit else latest
    return ChangePage(from_seq=cursor, to_seq=max(to_seq, cursor), latest=latest, changes=changes)


def _count_all(db: Central) -> int:
    tables = ("products", "members WHERE erased = 0", "stock_levels", "asns WHERE status = 'open'")
    return sum(int(db.scalar(f"SELECT count(*) FROM {table}", (), 0)) for table in tables)


def snapshot_chunk(db: Central, store_id: str, request: SnapshotRequest) -> SnapshotChunk:
    """The next chunk of a bootstrap snapshot. Rows are read as they are now, each with its version;
    the store replays the feed from ``as_of`` afterwards, and versions keep replay from going backwards."""
    if request.snapshot_id is None:
        as_of, total = latest_change(db), _count_all(db)
        snapshot_id = f"{as_of}.{total}.{os.urandom(4).hex()}"
        entity, after = SNAPSHOT_ENTITIES[0], None
    else:
        snapshot_id = request.snapshot_id
        as_of_text, total_text, _ = snapshot_id.split(".", 2)
        as_of, total = int(as_of_text), int(total_text)
        entity = request.entity if request.entity in SNAPSHOT_ENTITIES else SNAPSHOT_ENTITIES[0]
        after = request.after_key
    limit = max(1, min(request.limit, MAX_CHUNK))
    with gc_paused():
        rows, last_key = _entity_rows(db, store_id, request.stream, as_of, entity, after, limit)
    next_key: str | None
    next_entity: str | None
    if len(rows) == limit:
        next_key, next_entity = last_key, entity
    else:
        index = SNAPSHOT_ENTITIES.index(entity)
        next_key = None
        next_entity = SNAPSHOT_ENTITIES[index + 1] if index + 1 < len(SNAPSHOT_ENTITIES) else None
    return SnapshotChunk(
        snapshot_id=snapshot_id,
        as_of=as_of,
        entity=entity,
        rows=rows,
        next_key=next_key,
        next_entity=next_entity,
        progress=request.done + len(rows),
        total=max(total, request.done + len(rows)),
    )


def _json_object(text: str | None) -> Any:
    """A JSON object column as a dict (NULL and "{}" without a parse)."""
    return {} if not text or text == "{}" else msgspec.json.decode(text)


def _entity_rows(
    db: Central, store_id: str, stream: str, as_of: int, entity: str, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    after = after or ""
    if entity == "products":
        found = db.all(
            "SELECT sku, jan, name, price, tax_class, version, style, colour, size FROM products WHERE sku > ?"
            " ORDER BY sku LIMIT ?",
            (after, limit),
        )
        names = ("sku", "jan", "name", "price", "tax_class", "version", "style", "colour", "size")
        # A product that is no variant sends no variant keys: the snapshot row stays as small as before.
        rows = [{k: v for k, v in zip(names, r) if v is not None or k == "jan"} for r in found]
        return rows, (rows[-1]["sku"] if rows else None)
    if entity == "members":
        columns = ("member_id", "name", "kana", "phone", "email", "card_no", "line_user_id", "beacon_secret",
                   "consent", "custom", "home_store", "version")  # fmt: skip
        found = db.all(
            f"SELECT {', '.join(columns)} FROM members WHERE member_id > ? AND erased = 0 ORDER BY member_id LIMIT ?",
            (after, limit),
        )
        if not found:
            return [], None
        through = {store_id: int(db.scalar("SELECT last_applied_seq FROM stores WHERE store_id = ?", (store_id,), 0))}
        balances = dict(
            db.all(
                "SELECT member_id, balance FROM points_balances WHERE member_id >= ? AND member_id <= ?",
                (found[0][0], found[-1][0]),
            )
        )
        # A bootstrap reads every member: most have no consent or custom fields, so "{}" is not parsed.
        rows = [
            {"member_id": member_id, "name": name, "kana": kana, "phone": phone, "email": email, "card_no": card_no,
             "line_user_id": line_user_id, "consent": _json_object(consent),  # beacon keys: entity beacon_keys
             "custom": _json_object(custom), "home_store": home_store, "version": version,
             "points": int(balances.get(member_id, 0)), "through": through}
            for (member_id, name, kana, phone, email, card_no, line_user_id, beacon_secret, consent, custom,
                 home_store, version) in found
        ]  # fmt: skip
        return rows, found[-1][0]
    if entity == "loyalty":  # issue 17: each member's rank and lots as last sent (cloud/loyalty)
        return loyalty_rows(db, store_id, after, limit, as_of)
    if entity == "beacon_keys":  # issue 14: day keys for today and tomorrow, never the secrets
        return beacons.snapshot_rows(db, after, limit, time.time())
    if entity == "member_rules":  # the counter's registration rules, if HQ set any: one row
        value = None if after else db.scalar("SELECT value FROM member_settings WHERE name = 'counter.rules'")
        return ([json.loads(value)], "rules") if value else ([], None)
    if entity == "asns":  # open ones only: a store joining late still recognises a neighbour's delivery
        found = db.all(
            "SELECT shipment_id, data, status, version FROM asns WHERE status = 'open' AND shipment_id > ?"
            " ORDER BY shipment_id LIMIT ?",
            (after, limit),
        )
        rows = [{**json.loads(data), "status": status, "version": version} for _, data, status, version in found]
        return rows, (found[-1][0] if found else None)
    found = db.all(
        "SELECT store_id, sku, on_hand, as_of, version, store_id || '/' || sku AS k FROM stock_levels"
        " WHERE store_id || '/' || sku > ? ORDER BY k LIMIT ?",
        (after, limit),
    )
    rows = [dict(zip(("store_id", "sku", "on_hand", "as_of", "version"), r[:5])) for r in found]
    for row in rows:
        if row["store_id"] == store_id:
            # The store keeps its own ledger: it needs only what earlier lives of its database left behind.
            # HQ's own corrections after ``as_of`` reach the store through the feed it replays: not here too.
            row["opening"] = int(db.scalar(
                "SELECT coalesce(sum(delta), 0) FROM stock_ledger WHERE store_id = ? AND sku = ? AND stream <> ?"
                " AND NOT (stream = 'hq' AND store_seq > ?)",
                (store_id, row["sku"], stream, as_of), 0,
            ))  # fmt: skip
    return rows, (found[-1][5] if found else None)
