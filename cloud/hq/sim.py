"""Simulated stores in a central database, for the monitor's tests, snapshots and benchmark.

Everything is derived from the store number and a fixed ``now``, so two runs write the same rows
(snapshots stay byte-identical). Rows are written as the aggregator writes them, straight into the
tables; nothing here is used by the running system.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tenpo.cloud.db import Central
from tenpo.cloud.ledgers import INSERT_POINTS
from tenpo.cloud.sales.conflicts import check_points
from tenpo.shared import crypto
from tenpo.shared.protocol import PROTOCOL_VERSION, Envelope, Event, EventBatch, encode, up_topic

FIXED_NOW = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
EVENT_TYPES = ("stock.adjusted", "points.entry", "member.registered")
NAMES = ("渋谷", "新宿", "池袋", "梅田", "難波", "博多", "札幌", "仙台", "名古屋", "横浜", "神戸", "京都")


@dataclass(frozen=True, slots=True)
class SimStore:
    store_id: str
    key: Ed25519PrivateKey
    stream: str


def _seed_key(number: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(number.to_bytes(4, "big") * 8)


def hlc_at(seconds: float, counter: int = 0) -> int:
    return (int(seconds * 1000) << 16) | counter


def seed_stores(db: Central, count: int, now: float = FIXED_NOW, events_per_store: int = 60,
                span_s: float = 600.0) -> list[SimStore]:  # fmt: skip
    """``count`` registered stores with applied events spread over the last ``span_s`` seconds.

    Store n is offline when n % 7 == 3, has a large backlog when n % 5 == 4 and a skewed clock when
    n % 11 == 6, so every attention state appears in any table of a dozen stores or more.
    """
    stores, store_rows, event_rows = [], [], []
    for n in range(1, count + 1):
        store_id = f"S{n:03d}"
        key = _seed_key(n)
        stream = f"stream-{n:03d}"
        stores.append(SimStore(store_id, key, stream))
        online = n % 7 != 3
        backlog = 5000 + n if n % 5 == 4 else n % 3
        skew_ms = 9_000 if n % 11 == 6 else (n % 5) * 40 - 80
        last_seen = now - (1 + n % 4) if online else now - 30 - 90 * (n % 3)
        newest = now - 2 - (n % 9)
        store_rows.append((
            store_id, f"{NAMES[n % len(NAMES)]} {n}号店", crypto.public_key_pem(key), stream, events_per_store,
            events_per_store, int(online), n, last_seen, "0.1.0", 3, backlog, 0.0, n * 3, hlc_at(newest), skew_ms,
            hlc_at(newest), now - 86_400,
        ))  # fmt: skip
        for seq in range(1, events_per_store + 1):
            # denser towards now, so the sparklines rise: what a store opening for the day looks like
            at = now - span_s * (1 - (seq / events_per_store) ** 0.5) - (n % 13) - 0.5
            event_type = EVENT_TYPES[(seq + n) % len(EVENT_TYPES)]
            event_rows.append((store_id, stream, seq, f"{store_id}-{seq}", event_type, 1, hlc_at(at, seq),
                               json.dumps({"sku": "A1", "delta": 1, "reason": "sim"}), at, "sim"))  # fmt: skip
    with db.transaction():
        db.executemany(
            "INSERT INTO stores(store_id, name, public_key, stream, last_applied_seq, events_applied, online, bdseq,"
            " last_seen, agent_version, schema_version, backlog, oldest_pending_age_s, cursor, last_hlc, skew_ms,"
            " newest_event_hlc, registered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            store_rows,
        )
        db.executemany(
            "INSERT INTO events(store_id, stream, seq, event_id, type, schema, hlc, payload, applied_at, applied_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            event_rows,
        )
        db.execute("UPDATE counters SET value = ? WHERE name = 'change'", (count * 3 + 7,))
    return stores


def signed_batch(store: SimStore, first_seq: int, count: int, at: float, event_type: str = "stock.adjusted") -> bytes:
    """An upstream events envelope exactly as a store agent would publish it."""
    events = [
        Event(seq, f"{store.store_id}-{seq}", event_type, 1, hlc_at(at, seq),
              {"sku": "A1", "delta": 1, "reason": "sim", "location": "floor"})
        for seq in range(first_seq, first_seq + count)
    ]  # fmt: skip
    body = encode(EventBatch(store.stream, events, backlog=0))
    return encode(Envelope(PROTOCOL_VERSION, store.store_id, "events", body.decode(), crypto.sign(store.key, body)))


def add_dead_letter(db: Central, store_id: str | None, topic: str, reason: str, payload: bytes, at: float,
                    event_seq: int | None = None) -> int:  # fmt: skip
    with db.transaction():
        db.execute(
            "INSERT INTO dead_letters(store_id, topic, reason, payload, event_seq, received_at) VALUES (?, ?, ?, ?, ?, ?)",
            (store_id, topic, reason, payload, event_seq, at),
        )
        if store_id is not None:
            db.execute("UPDATE stores SET dead_letters = dead_letters + 1 WHERE store_id = ?", (store_id,))
        return int(db.scalar("SELECT max(id) FROM dead_letters"))


def events_topic(store_id: str) -> str:
    return up_topic(store_id, "events")


def add_points_conflict(db: Central, member_id: str, stores: tuple[str, str], at: float) -> None:
    """Two stores spend the same member's 500 points offline: balance -500, a conflict the sales
    area detects."""
    rows = [(member_id, 500, "accrual", "r-0", stores[0], f"stream-{stores[0][1:]}", 1, at - 300)]
    rows += [(member_id, -500, "redemption", f"r-{i}", s, f"stream-{s[1:]}", 2, at - 60 + i) for i, s in enumerate(stores)]
    with db.transaction():
        db.executemany(INSERT_POINTS, rows)
        check_points(db, member_id, stores[1], at)
