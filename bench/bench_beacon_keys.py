"""Beacon day keys at the store (issue 14): the agent's per-window work at a chain's scale.

Per window the beacon service computes every member's identifier of the window it is about to enter
from today's day keys (one HMAC each, written in chunks into SQLite: tenpo.edge.ble.ids.compute_window)
and loads the windows it accepts (previous, current, next) into its resolver. Measured on a fresh
replica with TENPO_BENCH_BEACON_MEMBERS members (100,000 by default), beside the 600 s window and the
150 MB RSS limit of the store agent; the store disk the keys take, beside the identifier lists before.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tenpo.edge import db as edge_db
from tenpo.edge.ble.ids import compute_window, window_rows
from tenpo.edge.ble.rotating_id import IdTableResolver
from tenpo.shared.beacon_id import WINDOW_S, day_keys, window_of

MEMBERS = int(os.environ.get("TENPO_BENCH_BEACON_MEMBERS", "100000"))
OLD_BYTES_PER_MEMBER = 12 * 1024  # the identifier lists this replaced (145 ids per member), as measured then


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="tenpo-bench-beacon-keys-"))
    db = edge_db.connect(workdir / "store.db")
    now = time.time()
    size_before = sum(p.stat().st_size for p in workdir.iterdir())
    with edge_db.transaction(db) as conn:
        for start in range(0, MEMBERS, 10_000):
            ids = [f"HQ-{i:07d}" for i in range(start, min(start + 10_000, MEMBERS))]
            conn.executemany("INSERT INTO members(member_id, version) VALUES (?, 1)", [(m,) for m in ids])
            conn.executemany(
                "INSERT INTO beacon_keys(member_id, day, key) VALUES (?, ?, ?)",
                [(m, day, key) for m in ids for day, key in day_keys(os.urandom(32), now)],
            )
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    keys_bytes = sum(p.stat().st_size for p in workdir.iterdir()) - size_before
    db.conn.close()
    print(f"beacon keys at the store, {MEMBERS:,} members: keys + members on disk {keys_bytes / MEMBERS:.0f} B/member"
          f" (identifier lists before: {OLD_BYTES_PER_MEMBER:,} B/member)", flush=True)  # fmt: skip
    # The agent's part in a fresh process, as the agent would run it: its peak RSS is the figure.
    subprocess.run([sys.executable, "-m", "bench.bench_beacon_keys", str(workdir / "store.db"), str(now)], check=True)


def measure(path: str, now: float) -> None:
    db = edge_db.connect(Path(path))
    current = window_of(now)
    base = _rss_mb("VmRSS")
    started = time.perf_counter()
    computed = compute_window(db.conn, current)
    one_window = time.perf_counter() - started
    for window in (current - 1, current + 1):
        compute_window(db.conn, window)
    started = time.perf_counter()
    resolver = IdTableResolver.from_rows(window_rows(db.conn, current - 1, current + 1), window_s=WINDOW_S)
    load_s = time.perf_counter() - started
    assert computed == MEMBERS and len(resolver) == MEMBERS
    started = time.perf_counter()
    probe = bytes(next(iter(db.conn.execute("SELECT rid FROM beacon_window_ids WHERE slot = ?", (current,))))[0])
    for _ in range(10_000):
        assert resolver.resolve(probe, now) is not None
    lookup_us = (time.perf_counter() - started) / 10_000 * 1e6
    peak = _rss_mb("VmHWM")
    print(f"one window's identifiers computed into SQLite: {one_window:.1f} s (window {WINDOW_S} s; target well under)")
    print(f"resolver of 3 windows loaded: {load_s:.1f} s; process peak RSS {peak:.0f} MB (at start {base:.0f} MB;"
          f" store agent limit 150 MB); one advert resolved in {lookup_us:.0f} µs")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 3:
        measure(sys.argv[1], float(sys.argv[2]))
    else:
        run()
