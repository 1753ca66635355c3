"""`make bench`: every benchmark, each in its own process so one's memory and warm caches do not
colour another's. Each prints its figures next to the limit it is measured against."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time

BENCHES = (
    "bench_sync", "bench_rfid", "bench_inspection", "bench_checkout_commit", "bench_checkout", "bench_ble",
    "bench_identity", "bench_hq",
)


def main() -> int:
    failed = []
    for name in BENCHES:
        if importlib.util.find_spec(f"bench.{name}") is None:
            continue
        print(f"\n== {name} ==", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", f"bench.{name}"])
        print(f"   ({time.monotonic() - started:.0f}s)", flush=True)
        if result.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that failed to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
