"""Pictures for `--chart FILE.png`: the RFM grid heatmap, the cohort retention triangle, the top rules
by lift. matplotlib with the Agg backend (the `hq` extra), written 0600."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tenpo.shared.errors import MissingExtra, UserError
from tenpo.shared.filemodes import private_file

from .basket import Rule
from .retention import CohortRow
from .rfm import RfmRow, grid


def _pyplot() -> Any:
    try:
        # Optional: the `hq` extra; loaded only when a chart is asked for.
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError as exc:
        raise MissingExtra("analytics charts (--chart)", "hq", exc) from None
    return pyplot


def _draw(path: Path, size: tuple[float, float], paint: Callable[[Any, Any], None]) -> None:
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=size)
    try:
        paint(figure, axes)
        figure.tight_layout()
        try:
            private_file(path)
            figure.savefig(path, format="png", dpi=100)
        except OSError as exc:
            raise UserError(f"--chart {path}: cannot write ({exc.strerror or exc})") from None
    finally:
        pyplot.close(figure)


def rfm_heatmap(rows: Sequence[RfmRow], path: Path, title: str) -> None:
    cells = grid(rows)

    def paint(figure: Any, ax: Any) -> None:
        image = ax.imshow(cells, origin="lower", cmap="YlGnBu")
        ax.set_xticks(range(5), [str(f) for f in range(1, 6)])
        ax.set_yticks(range(5), [str(r) for r in range(1, 6)])
        ax.set_xlabel("F score (frequency)")
        ax.set_ylabel("R score (recency)")
        for r in range(5):
            for f in range(5):
                ax.text(f, r, str(cells[r][f]), ha="center", va="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        figure.colorbar(image, ax=ax, label="members")

    _draw(path, (6.5, 5.5), paint)


def cohort_triangle(rows: Sequence[CohortRow], path: Path) -> None:
    width = max((len(r.retention) for r in rows), default=1)
    matrix = [[*r.retention, *([float("nan")] * (width - len(r.retention)))] for r in rows] or [[float("nan")]]

    def paint(figure: Any, ax: Any) -> None:
        image = ax.imshow(matrix, aspect="auto", cmap="Blues", vmin=0, vmax=1)
        ax.set_yticks(range(len(rows)), [f"{r.cohort} ({r.size})" for r in rows], fontsize=7)
        ax.set_xlabel("months since the first purchase")
        ax.set_title("cohort retention (share of the cohort buying that month)", fontsize=10)
        figure.colorbar(image, ax=ax, label="retention")

    _draw(path, (max(6.0, 0.35 * width + 3), max(4.0, 0.3 * len(rows) + 1.5)), paint)


def top_rules(rules: Sequence[Rule], path: Path, limit: int = 20) -> None:
    shown = list(rules[:limit])

    def paint(figure: Any, ax: Any) -> None:
        labels = [f"{', '.join(r.antecedent)} → {r.consequent}" for r in shown]
        ax.barh(labels or ["(no rule reaches the minimum support)"], [r.lift for r in shown] or [0.0], color="#2a7ab0")
        ax.invert_yaxis()
        ax.set_xlabel("lift")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"top {len(shown)} rules by lift", fontsize=10)

    _draw(path, (8.0, max(3.0, 0.3 * len(shown) + 1.5)), paint)


def ltv_bars(cohorts: Sequence[dict[str, Any]], path: Path) -> None:
    def paint(figure: Any, ax: Any) -> None:
        ax.bar([c["cohort"] for c in cohorts] or ["-"], [c["ltv_mean"] for c in cohorts] or [0], color="#4c9a2a")
        ax.set_ylabel("mean LTV (yen)")
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        ax.set_title("mean LTV per first-purchase cohort", fontsize=10)

    _draw(path, (8.0, 4.5), paint)
