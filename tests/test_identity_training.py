"""Match weights by expectation maximisation (issue 16 §4): the pure EM recovers known m and u from
synthetic comparison patterns; `tenpo cloud members train` estimates them on an imported member list,
shows them beside the hand-set ones with precision/recall on the truth, stores them, and imports use
them only when the rules say `[identity] weights = "trained"`."""

from __future__ import annotations

import csv
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.cloud.db import Central
from tenpo.cloud.identity.training import MISSING, em
from tenpo.cloud.members.config import load_rules
from tenpo.cloud.members.weights import configured
from tenpo.shared.errors import UserError
from tests.identity_data import generate

FIELDS = ("name", "birth", "phone")
LEVELS = {"name": ["exact", "near", "differ"], "birth": ["exact", "differ"], "phone": ["exact", "differ"]}
TRUE_M = {"name": {"exact": 0.85, "near": 0.10, "differ": 0.05}, "birth": {"exact": 0.92, "differ": 0.08},
          "phone": {"exact": 0.70, "differ": 0.30}}  # fmt: skip
TRUE_U = {"name": {"exact": 0.02, "near": 0.08, "differ": 0.90}, "birth": {"exact": 0.01, "differ": 0.99},
          "phone": {"exact": 0.03, "differ": 0.97}}  # fmt: skip


def _synthetic(share: float, pairs: int, seed: int) -> Counter[tuple[str, ...]]:
    rng = random.Random(seed)
    patterns: Counter[tuple[str, ...]] = Counter()
    for _ in range(pairs):
        table = TRUE_M if rng.random() < share else TRUE_U
        pattern = []
        for field in FIELDS:
            if rng.random() < 0.15:  # a side without the value: no evidence
                pattern.append(MISSING)
                continue
            levels, weights = zip(*table[field].items())
            pattern.append(rng.choices(levels, weights)[0])
        patterns[tuple(pattern)] += 1
    return patterns


def test_em_recovers_known_m_and_u() -> None:
    estimate = em(_synthetic(0.3, 40_000, seed=5), LEVELS, fields=FIELDS)
    assert estimate.converged
    assert estimate.match_share == pytest.approx(0.3, abs=0.02)
    for field in FIELDS:
        for level in LEVELS[field]:
            assert estimate.m[field][level] == pytest.approx(TRUE_M[field][level], abs=0.03), (field, level)
            assert estimate.u[field][level] == pytest.approx(TRUE_U[field][level], abs=0.03), (field, level)


def test_em_with_u_fixed_estimates_m_and_the_match_share() -> None:
    estimate = em(_synthetic(0.1, 40_000, seed=6), LEVELS, fields=FIELDS, fixed_u=TRUE_U)
    assert estimate.match_share == pytest.approx(0.1, abs=0.015)
    assert estimate.u["birth"]["exact"] == pytest.approx(0.01, abs=1e-9)  # held
    assert estimate.m["birth"]["exact"] == pytest.approx(0.92, abs=0.03)
    assert estimate.weight("birth", "exact") > estimate.weight("name", "exact") > 0 > estimate.weight("name", "differ")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """A generated member list (households sharing phones and e-mails) imported once, with its truth file."""
    folder = tmp_path_factory.mktemp("train")
    labelled = generate(seed=3, min_records=600)
    columns = ("source", "source_id", "name", "kana", "email", "phone", "postal_code", "address", "birth_date", "card_no")
    members, truth = folder / "members.csv", folder / "truth.csv"
    with members.open("w", encoding="utf-8", newline="") as out, truth.open("w", encoding="utf-8", newline="") as t:
        writer, truth_writer = csv.writer(out), csv.writer(t)
        writer.writerow(columns)
        truth_writer.writerow(("source", "source_id", "person"))
        for item in labelled:
            writer.writerow([item.raw.get(c, "") for c in columns])
            truth_writer.writerow((item.raw["source"], item.raw["source_id"], item.person_id))
    url = f"sqlite:///{folder / 'central.db'}"
    main(["cloud", "import", "members", str(members), "--db", url, "--json"])
    return url, members, truth


def test_train_shows_weights_beside_hand_set_ones_with_precision_and_recall(
        chain: tuple[str, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    url, _members, truth = chain
    capsys.readouterr()
    assert main(["cloud", "members", "train", "--db", url, "--truth", str(truth), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["records"] >= 600 and report["labelled_records"] == report["records"]
    levels = {(row["field"], row["level"]): row for row in report["levels"]}
    birth, differ = levels[("birth_date", "exact")], levels[("name", "differ")]
    assert birth["m"] > 0.5 and birth["u"] < 0.01 and birth["trained"] > 5  # a birth date is strong evidence
    assert differ["trained"] < 0 and birth["hand"] == 10.0
    for name in ("hand", "trained"):
        assert report[name]["precision"] > 0.9 and report[name]["recall"] > 0.8, report[name]
    db = Central(url, create=False)
    stored = json.loads(db.scalar("SELECT value FROM member_settings WHERE name = 'weights.trained'"))
    assert stored["weights"]["birth_exact"] == birth["trained"]
    assert main(["cloud", "members", "train", "--db", url, "--truth", str(truth)]) == 0
    text = capsys.readouterr().out
    assert "birth_date" in text and re.search(r"^trained +precision 0\.9", text, re.M)


def test_trained_weights_are_used_only_when_configured(chain: tuple[str, Path, Path], tmp_path: Path) -> None:
    url, _members, _truth = chain
    db = Central(url, create=False)
    hand = load_rules(None)
    assert configured(db, hand).match.weights == hand.match.weights
    rules = tmp_path / "rules.toml"
    rules.write_text('[identity]\nweights = "trained"\n', encoding="utf-8")
    if db.scalar("SELECT value FROM member_settings WHERE name = 'weights.trained'") is None:
        assert main(["cloud", "members", "train", "--db", url]) == 0
    trained = configured(db, load_rules(rules)).match.weights
    assert trained != hand.match.weights
    stored = json.loads(db.scalar("SELECT value FROM member_settings WHERE name = 'weights.trained'"))
    assert trained.birth_exact == stored["weights"]["birth_exact"]
    rules.write_text('[identity]\nweights = "learnt"\n', encoding="utf-8")
    with pytest.raises(UserError, match="hand.*trained"):
        load_rules(rules)


def test_trained_weights_without_training_is_one_line(sqlite_url: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    rules = tmp_path / "rules.toml"
    rules.write_text('[identity]\nweights = "trained"\n', encoding="utf-8")
    members = tmp_path / "m.csv"
    members.write_text("source,source_id,name\nlegacy,1,山田 太郎\n", encoding="utf-8")
    assert main(["cloud", "import", "members", str(members), "--db", sqlite_url, "--rules", str(rules)]) == 1
    assert "run tenpo cloud members train" in capsys.readouterr().err
