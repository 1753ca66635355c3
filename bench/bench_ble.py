"""BLE throughput on one core, next to what a busy store produces.

    python -m bench.bench_ble

A busy store: 200 phones advertising at 10 Hz = 2,000 advertisements a second. Target: decode at
least 50x that, so a Pi Zero-class CPU (roughly 10-20x slower than a laptop core) keeps up.
Two figures: the decoders alone, and the whole pipeline (decode, resolve the member's rotating
id among 100,000 members, presence engine).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from tenpo.edge.ble.advert import Advertisement
from tenpo.edge.ble.decode import APPLE_COMPANY_ID, EDDYSTONE_SERVICE_UUID, DecodeStats, decode_frames
from tenpo.edge.ble.pipeline import BeaconPipeline
from tenpo.edge.ble.recording import EXAMPLE_MEMBER_APP_UUID, member_eid_payload, member_ibeacon_payload
from tenpo.edge.ble.registry import parse_registry

BUSY_STORE_RATE = 200 * 10
TARGET_RATIO = 50
T0 = 1_767_225_600.0
MEMBERS = 100_000

REGISTRY = f"""
[member_app]
ibeacon_uuid = "{EXAMPLE_MEMBER_APP_UUID}"
[presence]
scanner_zone = "counter"
[[zones]]
name = "counter"
[[zone_beacons]]
name = "fitting-1"
zone = "counter"
namespace = "a1b2c3d4e5f60718293a"
instance = "000000000001"
"""


def store_traffic(secrets: list[bytes], count: int = 20_000, seed: int = 1) -> list[Advertisement]:
    """A realistic mix: most adverts are phones' Continuity chatter, some are beacons we read."""
    rng = random.Random(seed)
    uid = bytes.fromhex("00e3a1b2c3d4e5f60718293a0000000000010000")
    tlm = bytes.fromhex("20000b1813000000146700002ac4")
    continuity = bytes.fromhex("10050a1c77f95b")
    adverts = []
    for i in range(count):
        t = T0 + i / BUSY_STORE_RATE
        roll = rng.random()
        mfg: dict[int, bytes] = {}
        svc: dict[str, bytes] = {}
        if roll < 0.5:
            mfg = {APPLE_COMPANY_ID: continuity}
        elif roll < 0.75:
            mfg = {APPLE_COMPANY_ID: member_ibeacon_payload(rng.choice(secrets), t, EXAMPLE_MEMBER_APP_UUID)}
        elif roll < 0.85:
            svc = {EDDYSTONE_SERVICE_UUID: member_eid_payload(rng.choice(secrets), t)}
        elif roll < 0.95:
            svc = {EDDYSTONE_SERVICE_UUID: uid}
        else:
            svc = {EDDYSTONE_SERVICE_UUID: tlm}
        address = f"5A:00:00:00:{i >> 8 & 255:02X}:{i & 255:02X}"
        adverts.append(Advertisement(t, address, rng.randint(-95, -50), None, mfg, svc))
    return adverts


def _rate(work: Callable[[], int], seconds: float) -> float:
    """Best-of rate (items per second) over repeated runs lasting about ``seconds`` in all."""
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        items = work()
        best = max(best, items / (time.perf_counter() - start))
    return best


def run(seconds: float = 2.0) -> dict[str, float]:
    rng = random.Random(7)
    secrets = [rng.randbytes(32) for _ in range(MEMBERS)]
    adverts = store_traffic(secrets[:200])  # 200 phones in the store now

    stats = DecodeStats()

    def decode_all() -> int:
        for adv in adverts:
            decode_frames(adv.manufacturer_data, adv.service_data, stats)
        return len(adverts)

    pipeline = BeaconPipeline(parse_registry(REGISTRY), ((f"m{i}", s) for i, s in enumerate(secrets)))
    build_start = time.perf_counter()
    pipeline.resolver.prepare(T0)
    table_build_s = time.perf_counter() - build_start

    def feed_all() -> int:
        for adv in adverts:
            pipeline.feed(adv)
        return len(adverts)

    return {
        "decode_per_s": _rate(decode_all, seconds),
        "pipeline_per_s": _rate(feed_all, seconds),
        "table_build_s": table_build_s,
    }


def main() -> None:
    result = run()
    print(f"BLE, one core; busy store = 200 phones x 10 Hz = {BUSY_STORE_RATE:,} adverts/s, target >= {TARGET_RATIO}x")
    figures = (
        ("decode only", "decode_per_s"),
        (f"decode+resolve({MEMBERS:,} members)+presence", "pipeline_per_s"),
    )
    for label, key in figures:
        rate = result[key]
        ratio = rate / BUSY_STORE_RATE
        verdict = "ok" if ratio >= TARGET_RATIO else "BELOW TARGET"
        print(f"  {label:<48} {rate:>12,.0f} adverts/s  {ratio:>7.1f}x  {verdict}")
    print(f"  rotating-id tables for 3 windows x {MEMBERS:,} members built in {result['table_build_s']:.2f} s")


if __name__ == "__main__":
    main()
