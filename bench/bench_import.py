"""Member import at HQ: a messy file of 100,000 rows imported and resolved, next to a plain CSV parse.

    python -m bench.bench_import [--records N] [--seed S] [--db URL]

Target (issue 16): 100,000 records imported and resolved (cleansed, corrected or flagged, matched,
stored with their change-feed entries) in under 60 s, into a fresh SQLite central database. The
plain parse (the csv module reading the same file, nothing else) is measured in the same run, so
the figure can be read against what the machine does at all. Pairwise precision and recall against
the generator's truth file are printed beside the target of the test suite (0.995 / 0.97), and the
size of the review queue the import leaves (possible matches wait for a person: it must stay workable).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from tenpo.cloud.db import Central
from tenpo.cloud.loyalty import store as _loyalty  # noqa: F401 - registers its derived table, as the CLI loads it
from tenpo.cloud.members.imports import import_members
from tests.identity_data import pairwise_scores
from tests.messy_members import write_messy_file

TARGET_RECORDS = 100_000
TARGET_SECONDS = 60.0
TARGET_PRECISION, TARGET_RECALL = 0.995, 0.97


def plain_parse(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


def run(records: int, seed: int, folder: Path, url: str | None = None) -> dict[str, float]:
    path = folder / "members.csv"
    truth = write_messy_file(path, seed=seed, min_records=records)
    started = time.perf_counter()
    parsed = plain_parse(path)
    parse_s = time.perf_counter() - started
    db = Central(url or f"sqlite:///{folder / 'central.db'}")
    started = time.perf_counter()
    cpu = time.process_time()
    report = import_members(db, path)
    import_s, import_cpu = time.perf_counter() - started, time.process_time() - cpu
    member_of = {(s, i): m for s, i, m in db.all("SELECT source, source_id, member_id FROM member_sources")}
    precision, recall, _ = pairwise_scores([row.person_id for row in truth], [member_of[row.key] for row in truth])
    counts = report.counts()
    reviews = int(db.scalar("SELECT count(*) FROM member_reviews"))
    db.close()
    return {"records": parsed, "parse_s": parse_s, "import_s": import_s, "import_cpu_s": import_cpu,
            "kept": len(member_of), "rejected": counts["rejected"], "members": len(set(member_of.values())),
            "precision": precision, "recall": recall, "reviews": reviews}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=TARGET_RECORDS)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--db", help="central database URL (default: a fresh SQLite file)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_import_") as folder:
        r = run(args.records, args.seed, Path(folder), args.db)
    scaled = r["import_s"] * TARGET_RECORDS / r["records"]

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(f"Member import: {r['records']:,} messy rows -> {r['kept']:,} records kept ({r['rejected']:,} rejected), "
          f"{r['members']:,} members")
    print(f"  plain CSV parse  {r['parse_s']:6.2f} s  {r['records'] / r['parse_s']:>9,.0f} rows/s   (csv module, same file)")
    print(f"  import+resolve   {r['import_s']:6.2f} s  {r['records'] / r['import_s']:>9,.0f} rows/s   "
          f"target {TARGET_RECORDS:,} in < {TARGET_SECONDS:.0f} s ({TARGET_RECORDS / TARGET_SECONDS:,.0f}/s)  "
          f"{verdict(scaled < TARGET_SECONDS)}")
    print(f"                   {r['import_cpu_s']:6.2f} s CPU; {r['import_s'] / r['parse_s']:,.0f}x the plain parse")
    print(f"  precision        {r['precision']:.4f}   target >= {TARGET_PRECISION} "
          f" {verdict(r['precision'] >= TARGET_PRECISION)}")
    print(f"  recall           {r['recall']:.4f}   target >= {TARGET_RECALL}  {verdict(r['recall'] >= TARGET_RECALL)}")
    print(f"  review queue     {r['reviews']:,} possible pairs for a person ({r['reviews'] / r['records']:.3f} per row)")


if __name__ == "__main__":
    main()
