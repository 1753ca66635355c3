"""`make bench`: every benchmark, each in its own process so one's memory and warm caches do not
colour another's. Each prints its figures next to the limit it is measured against.

`python -m bench NAME` runs one of them (``apply`` runs bench/bench_apply.py), so its figures can be
checked on their own."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time

BENCHES = (
    "bench_sync", "bench_rfid", "bench_inspection", "bench_checkout_commit", "bench_checkout", "bench_ble",
    "bench_identity", "bench_import", "bench_hq", "bench_apply", "bench_ops",
    "bench_pii",  # issue 14 (H2): encrypted member lookups beside the plaintext ones, decrypt cost per profile
    "bench_pin",  # issue 14 (H3): clerk PIN hash time and the offline search it implies
    "bench_channel",  # issue 18 (H8): channel stock query and reservation round trip beside bare MQTT 5
    "bench_loyalty",  # issue 17 (H7): the nightly points expiry job over many members' lots
    "bench_analytics",  # issue 17 (H6): full RFM + rules at 10M lines, incremental per 1,000 sales (TENPO_BENCH_ANALYTICS_LINES)
    "bench_tls",  # issue 14 (H5): sync over TLS with client certificates beside plain, same broker (TENPO_BENCH_TLS_EVENTS)
    "bench_authority",  # issue 14 (H1): HQ apply rate with and without store authority (TENPO_BENCH_AUTHORITY_EVENTS)
    "bench_audit",  # issue 14 (H4): audit chain append cost beside an unchained insert, verify rows/s (TENPO_BENCH_AUDIT_ROWS)
    "bench_beacon_keys",  # issue 14 (H12): per-window beacon ids from day keys at 100,000 members (TENPO_BENCH_BEACON_MEMBERS)
)


def main(argv: list[str] | None = None) -> int:
    wanted = sys.argv[1:] if argv is None else argv
    if any(arg in ("-h", "--help") for arg in wanted):
        print(f"usage: python -m bench [NAME]   (NAME: {', '.join(name.removeprefix('bench_') for name in BENCHES)})")
        return 0
    unknown = [arg for arg in wanted if f"bench_{arg.removeprefix('bench_')}" not in BENCHES]
    if unknown:
        print(f"python -m bench: unknown benchmark {unknown[0]!r}; one of: "
              f"{', '.join(name.removeprefix('bench_') for name in BENCHES)}", file=sys.stderr)  # fmt: skip
        return 2
    chosen = [f"bench_{arg.removeprefix('bench_')}" for arg in wanted] or list(BENCHES)
    failed = []
    for name in chosen:
        if importlib.util.find_spec(f"bench.{name}") is None:
            continue
        if not wanted:  # one named benchmark prints only its own lines: its last one may be JSON to read
            print(f"\n== {name} ==", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", f"bench.{name}"])
        if not wanted:
            print(f"   ({time.monotonic() - started:.0f}s)", flush=True)
        if result.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that failed to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
