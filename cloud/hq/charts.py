"""The monitor's charts (key g): events per minute per store, and new dead letters and conflicts per
five minutes over the last hour, drawn with textual-plotext (the 'hq' extra; without it the screen
says so instead).

The per-store rates come from the throughput buckets the stores table already keeps (no query of
their own); the incident trend is one small query per refresh.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from tenpo.cloud.hq.model import format_age
from tenpo.cloud.hq.screens import _Reading
from tenpo.cloud.hq.trends import IncidentTrend, per_minute_series
from tenpo.cloud.hq.widgets import KeyHints, header

try:
    from textual_plotext import PlotextPlot  # the 'hq' extra

    HAVE_PLOTEXT = True
except ImportError:  # pragma: no cover - a box without the extra still runs the monitor
    HAVE_PLOTEXT = False


class ChartsScreen(_Reading):
    def __init__(self) -> None:
        super().__init__()
        self.rates: dict[str, tuple[float, ...]] = {}  # what the rates chart shows, per store
        self.incidents: IncidentTrend | None = None
        self.drawn = 0

    def compose(self) -> ComposeResult:
        yield header()
        with Vertical():
            if not HAVE_PLOTEXT:
                yield Static("charts need the 'hq' extra: pip install 'tenpo[hq]'", id="hint")
            else:
                yield PlotextPlot(id="rates")
                yield PlotextPlot(id="incidents")
        yield KeyHints()

    def on_mount(self) -> None:
        self.title = "Charts"

    def read(self) -> IncidentTrend:
        return self.hq.data.incident_trend()

    def show(self, incidents: IncidentTrend) -> None:
        app: Any = self.app
        overview = app.stores_screen.overview if app.stores_screen is not None else None
        bucket_s, buckets = app.config.bucket_s, app.config.buckets
        self.rates = per_minute_series(overview.trends if overview else {}, bucket_s)
        self.incidents = incidents
        if not HAVE_PLOTEXT:
            return
        self._draw_rates(bucket_s, buckets)
        self._draw_incidents(incidents)
        self.drawn += 1

    def _draw_rates(self, bucket_s: float, buckets: int) -> None:
        plot = self.query_one("#rates", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        minutes = [-(buckets - i) * bucket_s / 60 for i in range(buckets)]
        for store_id, values in self.rates.items():
            plt.plot(minutes, list(values), label=store_id)
        plt.title(f"Events per minute per store, last {format_age(buckets * bucket_s)} (busiest first)")
        plt.xlabel("minutes ago")
        plot.refresh()

    def _draw_incidents(self, trend: IncidentTrend) -> None:
        plot = self.query_one("#incidents", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        count = len(trend.dead_letters)
        minutes = [-(count - 1 - i) * trend.bucket_s / 60 for i in range(count)]
        plt.plot(minutes, list(trend.dead_letters), label="new dead letters", marker="braille")
        if trend.conflicts is not None:
            plt.plot(minutes, list(trend.conflicts), label="conflicts detected", marker="braille")
        plt.title(f"Dead letters and conflicts per {format_age(trend.bucket_s)}, last {format_age(count * trend.bucket_s)}")
        plt.xlabel("minutes ago")
        plot.refresh()
