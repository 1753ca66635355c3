"""`tenpo cloud members train`: match weights estimated from the chain's own source records
(tenpo.cloud.identity.training), stored in `member_settings`, used only when the members rules say
`[identity] weights = "trained"`.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from tenpo.cloud.changes import audit
from tenpo.cloud.db import Central
from tenpo.cloud.identity import MatchWeights, RecordKey, SourceRecord
from tenpo.cloud.identity.training import (
    WEIGHT_ATTRS,
    comparison_patterns,
    em,
    field_levels,
    pairwise_quality,
    random_pair_u,
    to_weights,
    weight_table,
)
from tenpo.shared.errors import UserError

from .config import MembersConfig
from .store import member_sources

SETTING = "weights.trained"


def chain_records(db: Central) -> list[SourceRecord]:
    """Every source record, as resolution sees it."""
    members = [r[0] for r in db.all("SELECT DISTINCT member_id FROM member_sources ORDER BY member_id")]
    return [row.record for member in members for row in member_sources(db, member)]


def read_truth(path: Path) -> dict[RecordKey, str] | dict[str, str]:
    """A CSV with `source_id` and `person` (or `person_id`) columns, and optionally `source`."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise UserError(f"--truth {path}: cannot read ({exc.strerror})") from None
    if not rows or "source_id" not in rows[0] or not ({"person", "person_id"} & set(rows[0])):
        raise UserError(f"--truth {path}: needs a header with source_id and person (or person_id) columns")
    person = "person" if "person" in rows[0] else "person_id"
    if "source" in rows[0]:
        return {(r["source"], r["source_id"]): r[person] for r in rows}
    return {r["source_id"]: r[person] for r in rows}


def _keyed_truth(truth: dict[Any, str], records: list[SourceRecord]) -> dict[RecordKey, str]:
    if all(isinstance(k, tuple) for k in truth):
        return {k: v for k, v in truth.items() if isinstance(k, tuple)}
    return {r.key: truth[r.source_id] for r in records if r.source_id in truth}


def train(db: Central, config: MembersConfig, truth_path: Path | None = None, *, random_pairs: int = 20000,
          seed: int = 1) -> dict[str, Any]:  # fmt: skip
    """Estimate m and u, compare with the hand-set weights (and on labelled data), and store them."""
    records = chain_records(db)
    if len(records) < 2:
        raise UserError("train: the central database holds fewer than two source records; import members first")
    match = config.match
    patterns = comparison_patterns(records, match)
    if not patterns:
        raise UserError("train: no candidate pairs share a blocking key; nothing to learn from")
    # As Splink does: m by EM over the blocked pairs, u from random pairs. The u EM finds among blocked
    # pairs is biased (a household shares a surname, an address, a phone: that is why they were blocked
    # together), the population's u is not.
    u = random_pair_u(records, random_pairs, seed, match)
    hand = MatchWeights()
    levels = field_levels()
    start_m = {f: {lvl: u[f][lvl] * 2 ** getattr(hand, WEIGHT_ATTRS[(f, lvl)][0]) for lvl in levels[f]} for f in levels}
    blocked = em(patterns, levels, start_m=start_m, start_u=u)
    estimate = replace(blocked, u=u)
    trained = to_weights(estimate, hand)
    report: dict[str, Any] = {
        "records": len(records), "candidate_pairs": sum(patterns.values()), "patterns": len(patterns),
        "match_share": round(estimate.match_share, 4), "iterations": estimate.iterations,
        "converged": estimate.converged, "levels": weight_table(hand, trained, estimate),
    }  # fmt: skip
    if truth_path is not None:
        truth = _keyed_truth(read_truth(truth_path), records)
        if not truth:
            raise UserError(f"--truth {truth_path}: none of its source ids is in the central database")
        report["labelled_records"] = len(truth)
        for name, weights in (("hand", hand), ("trained", trained)):
            quality = pairwise_quality(records, truth, replace(match, weights=weights))
            report[name] = {"precision": round(quality.precision, 4), "recall": round(quality.recall, 4),
                            "true_pairs": quality.true_pairs, "found_pairs": quality.found_pairs}  # fmt: skip
    now = time.time()
    value = json.dumps({"weights": asdict(trained), "match_share": estimate.match_share, "trained_at": now,
                        "records": len(records)})  # fmt: skip
    with db.transaction():
        db.execute("INSERT INTO member_settings(name, value, updated_by, updated_at) VALUES (?, ?, 'train', ?)"
                   " ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by,"
                   " updated_at = excluded.updated_at", (SETTING, value, now))  # fmt: skip
        audit(db, "train", "member.weights.train", None, {"records": len(records), "match_share": estimate.match_share})
    return report


def trained_weights(db: Central) -> MatchWeights | None:
    value = db.scalar("SELECT value FROM member_settings WHERE name = ?", (SETTING,))
    if value is None:
        return None
    stored = json.loads(value)["weights"]
    known = {f.name for f in fields(MatchWeights)}
    return MatchWeights(**{k: float(v) for k, v in stored.items() if k in known})


def configured(db: Central, config: MembersConfig) -> MembersConfig:
    """`config` with the trained weights when it asks for them (`[identity] weights = "trained"`)."""
    if config.weights != "trained":
        return config
    weights = trained_weights(db)
    if weights is None:
        raise UserError('rules: [identity] weights = "trained" but no weights were trained yet:'
                        " run tenpo cloud members train")  # fmt: skip
    return replace(config, match=replace(config.match, weights=weights))
