"""Clerk PIN hashing: the time one sign-in spends in scrypt, and what that makes an offline search cost.

    python -m bench.bench_pin [--rounds N]        (TENPO_BENCH_PIN_ROUNDS sets N too; default 5)

A stolen replica holds each clerk's hash, salt and cost (n, r, p). An attacker must run scrypt once per
guess; with a 6-digit minimum there are 10^6 PINs to try (half of them, on average, before the right
one). The target (issue 14): a full search costs at least days on one core, 10^6 x t >= 2 x 86,400 s,
while one sign-in stays under 0.5 s on the store box. Figures are for the machine this runs on: run it
on the store's own hardware to check the sign-in side (docs/roles.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from tenpo.edge.clerk.accounts import DEFAULT_COST, LEGACY_COST, MIN_PIN_LENGTH, ScryptCost, hash_pin

DAY_S = 86_400.0
TARGET_DAYS = 2.0  # "at least days": two days of one core for the whole 6-digit space
SIGN_IN_LIMIT_S = 0.5  # one sign-in on the store box (a Raspberry Pi class board)


def time_per_hash(cost: ScryptCost, rounds: int) -> tuple[float, float]:
    """(fastest, median) CPU seconds for one scrypt(pin, salt, cost) on one core.

    hashlib runs scrypt on the calling thread, so this process's CPU time is one core's work; the fastest
    round is what an attacker with an idle core gets (on a shared machine the median runs slower).
    """
    salt = os.urandom(16)
    times = []
    for n in range(rounds):
        started = time.process_time()
        hash_pin(f"{n:06d}", salt, cost)
        times.append(time.process_time() - started)
    return min(times), statistics.median(times)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("TENPO_BENCH_PIN_ROUNDS", "5")))
    args = parser.parse_args(argv)
    space = 10**MIN_PIN_LENGTH
    print(f"PIN space: {MIN_PIN_LENGTH} digits minimum = {space:,} PINs; target: full search >= "
          f"{TARGET_DAYS:g} days = {TARGET_DAYS * DAY_S:,.0f} s on one core; one sign-in <= {SIGN_IN_LIMIT_S} s")  # fmt: skip
    for label, cost in (("before (legacy)", LEGACY_COST), ("now (default)", DEFAULT_COST)):
        t, median = time_per_hash(cost, max(args.rounds, 1))
        full = space * t
        memory_mib = 128 * cost.n * cost.r * cost.p / 2**20
        print(f"{label:<16} scrypt n=2^{cost.n.bit_length() - 1} r={cost.r} p={cost.p} ({memory_mib:.0f} MiB): "
              f"{t * 1000:7.1f} ms per hash on one core, median {median * 1000:.1f} ms (limit "
              f"{SIGN_IN_LIMIT_S * 1000:.0f} ms for a sign-in on the store box: "
              f"{verdict(t <= SIGN_IN_LIMIT_S)} here)")  # fmt: skip
        print(f"{'':<16} all {space:,} PINs: {space:,} x {t:.3f} s = {full:,.0f} s = {full / DAY_S:.2f} days on one core "
              f"(target >= {TARGET_DAYS:g} days: {verdict(full >= TARGET_DAYS * DAY_S)}); "
              f"expected time to the right PIN: {full / 2 / DAY_S:.2f} days")  # fmt: skip
        seven = 10 * full
        print(f"{'':<16} with [clerks] min_pin_length = 7: {seven / DAY_S:.1f} days for all 10^7 PINs")


if __name__ == "__main__":
    main()
