"""Identity resolution quality and speed on the labelled generator, next to the target.

    python -m bench.bench_identity [--records N] [--seed S]

Target (issue 9): 20,000 source records resolved in under 30 s on this machine, with pairwise
precision >= 0.99 and recall >= 0.95. Cleansing is timed apart from resolution (an import pays
it once per row; re-resolving a batch does not).
"""

from __future__ import annotations

import argparse
import time

from tenpo.cloud.identity import MatchConfig, resolve
from tests.identity_data import RELAY_DOMAIN, generate, pairwise_scores, to_source_records

TARGET_RECORDS = 20_000
TARGET_SECONDS = 30.0
TARGET_PRECISION, TARGET_RECALL = 0.99, 0.95


def run(records: int = TARGET_RECORDS, seed: int = 9) -> dict[str, float]:
    labelled = generate(seed=seed, min_records=records)
    started = time.perf_counter()
    source_records = to_source_records(labelled)
    cleansed = time.perf_counter()
    resolution = resolve(source_records, MatchConfig(ignored_email_domains=frozenset({RELAY_DOMAIN})))
    resolved = time.perf_counter()
    cluster_of = resolution.cluster_of()
    precision, recall, f1 = pairwise_scores([item.person_id for item in labelled],
                                            [cluster_of[record.key] for record in source_records])
    return {
        "records": len(labelled), "people": len({item.person_id for item in labelled}),
        "clusters": len(resolution.clusters), "pairs_compared": resolution.pairs_compared,
        "cleanse_s": cleansed - started, "resolve_s": resolved - cleansed,
        "precision": precision, "recall": recall, "f1": f1,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=TARGET_RECORDS)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args(argv)
    r = run(args.records, args.seed)
    total = r["cleanse_s"] + r["resolve_s"]
    scaled = total * TARGET_RECORDS / r["records"]

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(f"Identity resolution: {r['records']:,} records of {r['people']:,} people -> {r['clusters']:,} clusters "
          f"({r['pairs_compared']:,} pairs compared)")
    print(f"  precision  {r['precision']:.4f}   target >= {TARGET_PRECISION}  {verdict(r['precision'] >= TARGET_PRECISION)}")
    print(f"  recall     {r['recall']:.4f}   target >= {TARGET_RECALL}  {verdict(r['recall'] >= TARGET_RECALL)}")
    print(f"  F1         {r['f1']:.4f}")
    print(f"  cleanse    {r['cleanse_s']:6.2f} s  {r['records'] / r['cleanse_s']:>9,.0f} records/s")
    print(f"  resolve    {r['resolve_s']:6.2f} s  {r['records'] / r['resolve_s']:>9,.0f} records/s")
    print(f"  total      {total:6.2f} s  {r['records'] / total:>9,.0f} records/s   "
          f"target {TARGET_RECORDS:,} in < {TARGET_SECONDS:.0f} s ({TARGET_RECORDS / TARGET_SECONDS:,.0f}/s)  "
          f"{verdict(scaled < TARGET_SECONDS)}")


if __name__ == "__main__":
    main()
