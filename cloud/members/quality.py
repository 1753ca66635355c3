"""`tenpo cloud members quality`: how clean the chain's member data is, per source and field.

Shares of valid / corrected / unverified / flagged / missing values come from the field quality every
source record carries now (tenpo.shared.cleansing.FieldQuality); duplicates merged from the golden
members; pending reviews from the review queue; the trend from the figures each member import records
as it finishes (`member_imports`, `member_import_stats`). The chart is matplotlib with the Agg backend:
stacked bars per source and field, and the trend of valid and flagged shares across imports.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from tenpo.cloud.db import Central
from tenpo.shared.cleansing import FIELD_STATUSES, MEMBER_FIELDS, MISSING, FieldQuality
from tenpo.shared.errors import MissingExtra, UserError

from .review import pending_items

__all__ = ["import_counts", "quality_chart", "quality_report", "record_import"]

Counts = dict[tuple[str, str], Counter[str]]  # (source, field) -> status -> records


class ImportedRow(Protocol):
    key: str  # "source:source_id"
    status: str
    quality: Mapping[str, FieldQuality]


def import_counts(rows: Iterable[ImportedRow]) -> Counts:
    """Per source and field, how many imported rows had each status (rejected rows have no fields)."""
    counts: Counts = defaultdict(Counter)
    for row in rows:
        if row.status == "rejected":
            continue
        source = row.key.partition(":")[0]
        for field in MEMBER_FIELDS:
            quality = row.quality.get(field)
            counts[(source, field)][quality.status if quality else MISSING] += 1
    return counts


def record_import(db: Central, file: str, rows: list[Any], started_at: float) -> int:
    """Keep one import's figures for the trend; returns the import's id."""
    counts = import_counts(rows)
    rejected = sum(1 for row in rows if row.status == "rejected")
    with db.transaction():
        import_id = int(db.scalar(
            "INSERT INTO member_imports(file, rows, rejected, started_at, finished_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
            (file, len(rows), rejected, started_at, time.time()),
        ))  # fmt: skip
        db.executemany(
            "INSERT INTO member_import_stats(import_id, source, field, valid, corrected, unverified, flagged, missing)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(import_id, source, field, *(c[s] for s in FIELD_STATUSES)) for (source, field), c in sorted(counts.items())],
        )  # fmt: skip
    return import_id


def _shares(counter: Mapping[str, int]) -> dict[str, float]:
    total = sum(counter.values())
    return {status: round(counter.get(status, 0) / total, 4) if total else 0.0 for status in FIELD_STATUSES}


def _current(db: Central) -> tuple[Counts, Counter[str], Counter[str]]:
    """Status counts over the source records held now, records per source, and records per source in a
    golden member that holds more than one record (a duplicate that was merged)."""
    counts: Counts = defaultdict(Counter)
    records: Counter[str] = Counter()
    merged: Counter[str] = Counter()
    sizes = dict(db.all("SELECT member_id, count(*) FROM member_sources GROUP BY member_id"))
    for source, member_id, text in db.all("SELECT source, member_id, field_quality FROM member_sources"):
        records[source] += 1
        if int(sizes.get(member_id, 1)) > 1:
            merged[source] += 1
        quality = json.loads(text or "{}")
        for field in MEMBER_FIELDS:
            status = quality.get(field, {}).get("status", MISSING) if isinstance(quality.get(field), dict) else MISSING
            counts[(source, field)][status if status in FIELD_STATUSES else MISSING] += 1
    return counts, records, merged


def quality_report(db: Central) -> dict[str, Any]:
    """Everything the report shows, as plain data (the --json output)."""
    counts, records, merged = _current(db)
    reviews: Counter[str] = Counter()
    pending = pending_items(db, with_values=False)
    for item in pending:
        for source in {item.left[0], item.right[0]}:
            reviews[source] += 1
    sources = []
    for source in sorted(records):
        fields = {field: {"counts": {s: counts[(source, field)][s] for s in FIELD_STATUSES},
                          "shares": _shares(counts[(source, field)])} for field in MEMBER_FIELDS}  # fmt: skip
        sources.append({"source": source, "records": records[source], "merged_duplicates": merged[source],
                        "pending_reviews": reviews[source], "fields": fields})  # fmt: skip
    golden = int(db.scalar("SELECT count(DISTINCT member_id) FROM member_sources", (), 0))
    return {
        "records": sum(records.values()), "members": golden, "duplicates_merged": sum(records.values()) - golden,
        "pending_reviews": len(pending), "sources": sources, "trend": _trend(db),
    }  # fmt: skip


def _trend(db: Central) -> list[dict[str, Any]]:
    """Per import, oldest first: rows, rejected, and the shares of each status over all its fields
    (`shares`) and over the values that were there (`present_shares`: missing left out)."""
    stats: dict[int, Counter[str]] = defaultdict(Counter)
    columns = ", ".join(FIELD_STATUSES)
    for row in db.all(f"SELECT import_id, {columns} FROM member_import_stats"):
        for status, n in zip(FIELD_STATUSES, row[1:]):
            stats[int(row[0])][status] += int(n)
    return [
        {"import_id": int(i), "file": file, "rows": int(rows), "rejected": int(rejected), "finished_at": finished,
         "shares": _shares(stats[int(i)]),
         "present_shares": _shares(stats[int(i)] - Counter({MISSING: stats[int(i)][MISSING]}))}
        for i, file, rows, rejected, finished in db.all(
            "SELECT id, file, rows, rejected, finished_at FROM member_imports ORDER BY id")
    ]  # fmt: skip


_COLOURS = {"valid": "#4c9a2a", "corrected": "#2a7ab0", "unverified": "#e0a030", "flagged": "#c8423b",
            "missing": "#c8c8c8"}  # fmt: skip


def quality_chart(report: Mapping[str, Any], path: Path) -> None:
    """Stacked bars (one per source and field) and the trend across imports, as a PNG."""
    try:
        # Optional: the `hq` extra; a store box never draws charts.
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError as exc:
        raise MissingExtra("the data-quality chart (--chart)", "hq", exc) from None
    bars = [(f"{s['source']} · {field}", s["fields"][field]["shares"]) for s in report["sources"] for field in MEMBER_FIELDS]
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(13, max(4.0, 0.22 * len(bars) + 1.5)),
                                            gridspec_kw={"width_ratios": [3, 2]})  # fmt: skip
    try:
        labels = [label for label, _ in bars]
        start = [0.0] * len(bars)
        for status in FIELD_STATUSES:
            widths = [shares[status] for _, shares in bars]
            left.barh(labels, widths, left=start, color=_COLOURS[status], label=status)
            start = [a + b for a, b in zip(start, widths)]
        left.invert_yaxis()
        left.set_xlim(0, 1)
        left.set_title(f"share of records by status · {report['records']} records,"
                       f" {report['duplicates_merged']} duplicates merged, {report['pending_reviews']} reviews pending",
                       fontsize=10)  # fmt: skip
        left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=len(FIELD_STATUSES), fontsize=8)
        left.tick_params(axis="y", labelsize=7)
        trend = report["trend"]
        xs = [t["import_id"] for t in trend]
        for status in ("valid", "corrected", "flagged"):
            right.plot(xs, [t["present_shares"][status] for t in trend], marker="o", color=_COLOURS[status], label=status)
        right.set_ylim(0, 1)
        right.set_xlabel("import")
        right.set_ylabel("share of the values given")
        right.xaxis.get_major_locator().set_params(integer=True)
        right.set_title("trend across imports", fontsize=10)
        right.legend(fontsize=8)
        figure.tight_layout()
        try:
            figure.savefig(path, format="png", dpi=100)
        except OSError as exc:
            raise UserError(f"--chart {path}: cannot write ({exc.strerror or exc})") from None
    finally:
        pyplot.close(figure)
