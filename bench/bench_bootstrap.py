"""A store's bootstrap of members applied in-process, with where its CPU goes (issue 19 §5).

    python -m bench.bench_bootstrap         (TENPO_BENCH_BOOT_MEMBERS, default 100,000; scales linearly)
    TENPO_BENCH_BOOT_WORKER=1 python -m bench.bench_bootstrap   (single process and forked worker, alternately)

`python -m bench sync` times the real thing (broker, HQ's aggregator, the agent, 1,000,000 members); on a
shared 2-core machine its seconds swing with the load. This applies HQ's own chunks (5,000 members each,
encoded and decoded as on the wire) to a fresh replica in this process, no broker and no agent start-up,
and reports CPU seconds per 100,000 members until "members usable" (blind indexes built, name tokens left
for later), then the same chunks' decoding and sealing again alone, so old and new code can be compared
back to back: run it from two checkouts, one after the other, several times.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import sqlite_utils

from tenpo.cloud.db import Central
from tenpo.cloud.feed import snapshot_chunk
from tenpo.edge import bootstrap_bulk, bootstrap_worker, feed
from tenpo.edge import db as edge_db
from tenpo.edge.config import load_config
from tenpo.edge.keystore import codec as pii_codec
from tenpo.edge.membership import vault
from tenpo.sandbox import provision_store
from tenpo.shared.changes import MemberUpsert
from tenpo.shared.protocol import SnapshotRequest, encode

MEMBERS = int(os.environ.get("TENPO_BENCH_BOOT_MEMBERS", "100000"))
PER = 100_000  # figures are CPU seconds per this many members


def _central(url: str, members: int) -> None:
    """HQ's members, the same synthetic ones as bench/bench_sync.py's bootstrap."""
    central = Central(url)
    now = time.time()
    with central.transaction():
        central.executemany(
            "INSERT INTO members(member_id, name, kana, phone, email, card_no, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(f"HQ-{i:07d}", f"会員 {i}", f"カイイン{i}", f"+8190{10_000_000 + i:08d}", f"m{i}@example.jp",
              f"C{i:09d}", now, now) for i in range(members)],
        )  # fmt: skip
    central.close()


def _chunks(url: str) -> list[bytes]:
    """Every chunk of one snapshot as HQ sends it, in order."""
    central = Central(url)
    found: list[bytes] = []
    request = SnapshotRequest(stream="s")
    try:
        while True:
            chunk = snapshot_chunk(central, "B001", request)
            found.append(encode(chunk))
            if chunk.next_key is None and chunk.next_entity is None:
                return found
            entity = chunk.entity if chunk.next_key is not None else chunk.next_entity
            request = SnapshotRequest(snapshot_id=chunk.snapshot_id, entity=entity, after_key=chunk.next_key,
                                      done=chunk.progress, stream="s")  # fmt: skip
    finally:
        central.close()


def _store(workdir: Path, url: str, name: str) -> sqlite_utils.Database:
    return edge_db.connect(
        load_config(str(provision_store(workdir / name, "B001", "mqtt://127.0.0.1:1", url))).database
    )


def _apply(store: sqlite_utils.Database, chunks: list[bytes], parallel: bool) -> tuple[float, float, float, int]:
    """Wall seconds until members usable, CPU seconds of this process and of the worker, peak PSS KiB of both."""
    started, cpu = time.monotonic(), os.times()
    if not parallel:
        for data in chunks:
            progress = feed.apply_snapshot_chunk(store, "B001", feed.decode_snapshot_chunk(data), defer_tokens=True)
        assert progress.done
        after = os.times()
        return time.monotonic() - started, after.user + after.system - cpu.user - cpu.system, 0.0, 0
    worker = bootstrap_worker.Worker(
        pii_codec(store.conn), "B001", bootstrap_bulk.worker_dir(store.conn), feed.WORKER_READER
    )
    peak = 0
    try:
        worker.submit(chunks[0])
        for k, data in enumerate(chunks):
            if k + 1 < len(chunks):
                worker.submit(chunks[k + 1])  # prepared while chunk k is inserted
            prepared = worker.take(k + 1)
            chunk = feed.prepared_chunk(data, prepared) if prepared.rows >= 0 else feed.decode_snapshot_chunk(data)
            progress = feed.apply_snapshot_chunk(store, "B001", chunk, defer_tokens=True)
            peak = max(peak, _rss_kib(os.getpid()) + _rss_kib(worker.pid or 0))
        assert progress.done
    finally:
        worker.close()
    after = os.times()
    own = after.user + after.system - cpu.user - cpu.system
    child = after.children_user + after.children_system - cpu.children_user - cpu.children_system  # reaped worker
    return time.monotonic() - started, own, child, peak


def _rss_kib(pid: int) -> int:
    """Proportional set size: pages the fork still shares with the agent are counted once, not twice."""
    with open(f"/proc/{pid}/smaps_rollup") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Pss:"))


def compare(members: int = MEMBERS) -> None:
    """Single-process and worker paths back to back on the same chunks: wall and CPU per PER members."""
    workdir = Path(tempfile.mkdtemp(prefix="tenpo-bench-boot-"))
    url = f"sqlite:///{workdir / 'central.db'}"
    _central(url, members)
    chunks = _chunks(url)
    scale = PER / members
    for n, parallel in enumerate((False, True, False, True)):
        wall, own, child, peak = _apply(_store(workdir, url, f"s{n}"), chunks, parallel)
        extra = f" + worker {child * scale:.2f}, peak PSS agent+worker {peak / 1024:.0f} MB" if parallel else ""
        print(f"{'worker' if parallel else 'single'}: {wall * scale:.2f} s wall, CPU per {PER:,}: agent {own * scale:.2f}"
              f"{extra}; load {os.getloadavg()[0]:.1f}")  # fmt: skip


def run(members: int = MEMBERS) -> dict[str, float]:
    """CPU seconds per PER members: until usable, and decoding and sealing alone."""
    workdir = Path(tempfile.mkdtemp(prefix="tenpo-bench-boot-"))
    url = f"sqlite:///{workdir / 'central.db'}"
    _central(url, members)
    chunks = _chunks(url)
    store = edge_db.connect(
        load_config(str(provision_store(workdir / "boot", "B001", "mqtt://127.0.0.1:1", url))).database
    )
    started = time.process_time()
    for data in chunks:
        progress = feed.apply_snapshot_chunk(store, "B001", feed.decode_snapshot_chunk(data), defer_tokens=True)
    usable = time.process_time() - started
    assert progress.done
    started = time.process_time()
    decoded = [feed.decode_snapshot_chunk(data) for data in chunks]
    decoding = time.process_time() - started
    codec = pii_codec(store.conn)
    started = time.process_time()
    for chunk in decoded:
        rows: list[MemberUpsert] = [row for row in chunk.rows if isinstance(row, MemberUpsert)]
        people = [vault.Personal(r.name, r.kana, r.phone, r.email, r.card_no, r.line_user_id) for r in rows]
        vault.sealed_rows(codec, [r.member_id for r in rows], people)
    sealing = time.process_time() - started
    scale = PER / members
    return {"usable": usable * scale, "decoding": decoding * scale, "sealing": sealing * scale}


def main() -> None:
    if os.environ.get("TENPO_BENCH_BOOT_WORKER"):
        compare()
        return
    figures = run()
    rest = figures["usable"] - figures["decoding"] - figures["sealing"]
    print(f"bootstrap of {MEMBERS:,} members in-process: {figures['usable']:.2f} CPU s per {PER:,} until members "
          f"usable (x10: {figures['usable'] * 10:.1f} s for 1,000,000; the agent adds its start-up and the broker's "
          f"messages); of it decoding {figures['decoding']:.2f}, sealing and blind indexes {figures['sealing']:.2f}, "
          f"the rest (members insert, index sorts, commits) {rest:.2f}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
