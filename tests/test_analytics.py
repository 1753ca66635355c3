"""Issue 17: every analytics figure checked against a straightforward pandas computation over the
generated sales, and the basket rules against mlxtend's association_rules, on SQLite and PostgreSQL.
The expected values are computed here, from the generated data, never copied from the code."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlxtend.frequent_patterns import apriori, association_rules
from mlxtend.preprocessing import TransactionEncoder

from tenpo.cli import main
from tenpo.cloud.db import Central
from tenpo.sandbox import tenpo_command
from tests.test_analytics_data import AS_OF, purchases_frame, seed

QUANTILES = [0.2, 0.4, 0.6, 0.8]


@pytest.fixture
def seeded(central_url: str, tmp_path: Path) -> tuple[str, pd.DataFrame]:
    db = Central(central_url)
    generated = seed(db, tmp_path)
    frame = purchases_frame(db, generated)
    db.close()
    return central_url, frame


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    assert main(["cloud", "analytics", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------------------- the reference


def reference_rfm(frame: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    f = frame[frame["member"].notna() & (frame["day"] <= as_of)]
    sales = f[f["is_sale"]]
    df = sales.groupby("member").agg(last=("day", "max"), frequency=("pid", "nunique"))
    df = df.join(f.groupby("member")["amount"].sum().rename("monetary"))
    df["recency_days"] = [(as_of - d).days for d in df["last"]]

    def score(column: str, down: bool = False) -> pd.Series:
        cuts = np.quantile(df[column].to_numpy(), QUANTILES, method="lower")
        above = sum((df[column] > c).astype(int) for c in cuts)
        return 5 - above if down else 1 + above

    df["r"], df["f"], df["m"] = score("recency_days", True), score("frequency"), score("monetary")

    def segment(row: pd.Series) -> str:  # docs/analytics.md §3, the default segments in order
        if row.r >= 4 and row.f >= 4 and row.m >= 4:
            return "優良"
        if row.r >= 4 and row.frequency == 1:
            return "新規"
        if row.r == 1:
            return "休眠"
        if 2 <= row.r <= 3 and row.f >= 3:
            return "離反予備軍"
        return "育成"

    df["segment"] = df.apply(segment, axis=1)
    return df


def by_member(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {r["member_id"]: (r["recency_days"], r["frequency"], r["monetary"], r["r"], r["f"], r["m"], r["segment"])
            for r in rows}  # fmt: skip


def expected_rfm(df: pd.DataFrame) -> dict[str, tuple[Any, ...]]:
    return {m: (int(r.recency_days), int(r.frequency), int(r.monetary), int(r.r), int(r.f), int(r.m), r.segment)
            for m, r in df.iterrows()}  # fmt: skip


def reference_rules(frame: pd.DataFrame, min_support: float) -> dict[tuple[str, str], tuple[float, float, float]]:
    baskets = [list(s) for s in frame[frame["is_sale"]]["skus"] if len(s)]
    encoder = TransactionEncoder()
    onehot = pd.DataFrame(encoder.fit(baskets).transform(baskets), columns=encoder.columns_)
    frequent = apriori(onehot, min_support=min_support, use_colnames=True, max_len=2)
    rules = association_rules(frequent, num_itemsets=len(baskets), metric="confidence", min_threshold=0.0)
    single = rules[(rules["antecedents"].map(len) == 1) & (rules["consequents"].map(len) == 1)]
    return {(next(iter(r.antecedents)), next(iter(r.consequents))): (r.support, r.confidence, r.lift)
            for r in single.itertuples()}  # fmt: skip


# ---------------------------------------------------------------------------- RFM


def test_rfm_matches_pandas_at_an_as_of_date_and_today(seeded: tuple[str, pd.DataFrame],
                                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    url, frame = seeded
    for as_of in (AS_OF, dt.date(2025, 9, 30)):
        rows = run_json(capsys, "rfm", "--as-of", as_of.isoformat(), "--db", url)
        assert by_member(rows) == expected_rfm(reference_rfm(frame, as_of))
        assert {r["segment"] for r in rows} >= {"優良", "休眠"}, "the generated chain has best and dormant members"
    today = (pd.Timestamp.now(tz="Asia/Tokyo")).date()
    rows = run_json(capsys, "rfm", "--db", url)  # default: today in JST, from the incremental table
    assert by_member(rows) == expected_rfm(reference_rfm(frame, today))


def test_rfm_of_one_store_counts_only_its_purchases(seeded: tuple[str, pd.DataFrame],
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    url, frame = seeded
    rows = run_json(capsys, "rfm", "--as-of", AS_OF.isoformat(), "--store", "S002", "--db", url)
    assert by_member(rows) == expected_rfm(reference_rfm(frame[frame["store"] == "S002"], AS_OF))


def test_configured_cut_points_and_segments_from_toml(seeded: tuple[str, pd.DataFrame], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    url, frame = seeded
    config = tmp_path / "analytics.toml"
    toml = ('[rfm]\nrecency_days = [30, 60, 120, 240]\nfrequency = [1, 2, 4, 8]\nmonetary = [5000, 10000, 20000, 40000]\n'
            '[[segments]]\nname = "VIP"\nm = [5, 5]\n[[segments]]\nname = "その他"\n')
    config.write_text(toml, encoding="utf-8")
    rows = run_json(capsys, "rfm", "--as-of", AS_OF.isoformat(), "--config", str(config), "--db", url)
    ref = reference_rfm(frame, AS_OF)
    for row in rows:
        r = ref.loc[row["member_id"]]
        assert row["r"] == 5 - sum(int(r.recency_days) > c for c in (30, 60, 120, 240))
        assert row["f"] == 1 + sum(int(r.frequency) > c for c in (1, 2, 4, 8))
        assert row["m"] == 1 + sum(int(r.monetary) > c for c in (5000, 10000, 20000, 40000))
        assert row["segment"] == ("VIP" if row["m"] == 5 else "その他")
    config.write_text("[[segments]]\nname = 1\n", encoding="utf-8")
    assert main(["cloud", "analytics", "rfm", "--config", str(config), "--db", url]) == 1
    assert "segments[1].name" in capsys.readouterr().err


# ---------------------------------------------------------------------------- retention, LTV


def test_f2_repeat_cohorts_and_ltv_match_pandas(seeded: tuple[str, pd.DataFrame],
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    url, frame = seeded
    data = run_json(capsys, "cohorts", "--as-of", AS_OF.isoformat(), "--db", url)
    f = frame[frame["member"].notna() & (frame["day"] <= AS_OF)]
    sales = f[f["is_sale"]].sort_values(["day", "pid"])
    first = sales.groupby("member").nth(0).set_index("member")
    second = sales.groupby("member").nth(1).set_index("member")
    members = first.assign(month=[d.strftime("%Y-%m") for d in first["day"]])
    members["converted"] = [m in second.index and (second.loc[m, "day"] - first.loc[m, "day"]).days <= 90
                            for m in members.index]  # fmt: skip
    f2 = members.groupby(["month", "channel"]).agg(n=("converted", "size"), c=("converted", "sum"))
    assert [(x["month"], x["channel"], x["members"], x["converted"]) for x in data["f2"]] == [
        (month, channel, int(r.n), int(r.c)) for (month, channel), r in f2.iterrows()]
    counts = sales.groupby("member")["pid"].nunique()
    assert data["repeat"] == {"members": len(counts), "repeaters": int((counts >= 2).sum()),
                              "rate": round(float((counts >= 2).mean()), 6)}  # fmt: skip
    months = sales.assign(month=[d.year * 12 + d.month - 1 for d in sales["day"]])
    cohort_of = {m: d.year * 12 + d.month - 1 for m, d in first["day"].items()}
    last = AS_OF.year * 12 + AS_OF.month - 1
    monetary = f.groupby("member")["amount"].sum()
    expected = []
    for cohort in sorted(set(cohort_of.values())):
        cohort_members = [m for m, c in cohort_of.items() if c == cohort]
        active = [months[months["member"].isin(cohort_members) & (months["month"] == cohort + k)]["member"].nunique()
                  for k in range(last - cohort + 1)]  # fmt: skip
        expected.append({"cohort": f"{cohort // 12:04d}-{cohort % 12 + 1:02d}", "size": len(cohort_members), "active": active,
                         "ltv_mean": round(float(monetary[cohort_members].mean()), 2)})  # fmt: skip
    assert [{k: c[k] for k in ("cohort", "size", "active", "ltv_mean")} for c in data["cohorts"]] == expected
    ltv = run_json(capsys, "ltv", "--as-of", AS_OF.isoformat(), "--db", url)
    assert {m["member_id"]: m["ltv"] for m in ltv["members"]} == {m: int(v) for m, v in monetary[counts.index].items()}
    assert [(c["cohort"], c["ltv_mean"]) for c in ltv["cohorts"]] == [(c["cohort"], c["ltv_mean"]) for c in expected]


# ---------------------------------------------------------------------------- basket


@pytest.mark.parametrize("min_support", [0.02, 0.05])
def test_basket_rules_match_mlxtend(seeded: tuple[str, pd.DataFrame], capsys: pytest.CaptureFixture[str],
                                    min_support: float) -> None:  # fmt: skip
    url, frame = seeded
    rules = run_json(capsys, "basket", "--min-support", str(min_support), "--db", url)
    expected = reference_rules(frame, min_support)
    got = {(r["antecedent"][0], r["consequent"]): (r["support"], r["confidence"], r["lift"]) for r in rules}
    assert set(got) == set(expected) and expected, "the same rules, both directions"
    for key, values in expected.items():
        assert got[key] == pytest.approx(values, rel=1e-9)
    assert ("SKU00", "SKU03") in got and got[("SKU00", "SKU03")][2] > 1.5, "the planted association stands out"
    assert [r["lift"] for r in rules] == sorted((r["lift"] for r in rules), reverse=True)


def test_basket_per_store_matches_mlxtend_on_that_store(seeded: tuple[str, pd.DataFrame],
                                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    url, frame = seeded
    rules = run_json(capsys, "basket", "--min-support", "0.03", "--store", "S003", "--db", url)
    expected = reference_rules(frame[frame["store"] == "S003"], 0.03)
    got = {(r["antecedent"][0], r["consequent"]): (r["support"], r["confidence"], r["lift"]) for r in rules}
    assert set(got) == set(expected)
    for key, values in expected.items():
        assert got[key] == pytest.approx(values, rel=1e-9)


# ---------------------------------------------------------------------------- charts, recommend


def test_charts_are_png_pictures(seeded: tuple[str, pd.DataFrame], tmp_path: Path) -> None:
    url, _frame = seeded
    for command, extra in (("rfm", ["--as-of", AS_OF.isoformat()]), ("basket", ["--min-support", "0.02"]),
                           ("cohorts", ["--as-of", AS_OF.isoformat()]), ("ltv", [])):  # fmt: skip
        chart = tmp_path / f"{command}.png"
        assert main(["cloud", "analytics", command, *extra, "--chart", str(chart), "--db", url]) == 0
        data = chart.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, command
        assert chart.stat().st_mode & 0o777 == 0o600


def test_the_tenpo_command_draws_a_chart(seeded: tuple[str, pd.DataFrame], tmp_path: Path) -> None:
    """The command line loads numpy for matplotlib though it blocks pandas (tenpo/__init__.py)."""
    url, _frame = seeded
    chart = tmp_path / "ltv.png"
    done = subprocess.run(tenpo_command("cloud", "analytics", "ltv", "--chart", str(chart), "--db", url),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recommend_offers_co_purchased_items_not_bought_recently(seeded: tuple[str, pd.DataFrame],
                                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    url, frame = seeded
    today = pd.Timestamp.now(tz="Asia/Tokyo").date()
    members = frame[frame["member"].notna() & frame["is_sale"]]
    member = members.groupby("member")["pid"].nunique().idxmax()
    data = run_json(capsys, "recommend", member, "--db", url)
    recent = {sku for _, r in members[members["member"] == member].iterrows() for sku in r.skus
              if (today - r.day).days <= 30}  # fmt: skip
    skus = [i["sku"] for i in data["items"]]
    assert len(skus) == 5 and not set(skus) & recent and len(set(skus)) == 5
    assert all(i["reason"].startswith(("bought-with:", "best-seller")) for i in data["items"])
    assert data["items"][0]["name"] == f"商品 {skus[0]}"
    assert main(["cloud", "analytics", "recommend", "G9999", "--db", url]) == 1
    assert "not known at HQ" in capsys.readouterr().err
