"""The monitor's segments panel (key `e` on the stores screen): members per RFM segment as of today
(JST), with each segment's share and mean monetary value, from the analytics tables the scheduled
refresh keeps current (tenpo.cloud.analytics; docs/analytics.md). Read-only: nothing is refreshed here."""

from __future__ import annotations

import time
from typing import Any

from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from tenpo.cloud.analytics.config import load_config
from tenpo.cloud.analytics.reports import rfm
from tenpo.cloud.db import Central
from tenpo.cloud.hq.screens import _Reading, fill
from tenpo.cloud.hq.widgets import KeyHints, header

__all__ = ["SegmentsScreen", "segment_table"]


def segment_table(db: Central) -> list[tuple[str, int, str, str]]:
    """(segment, members, share, mean monetary) in the configured order, then any others."""
    config = load_config()
    rows = rfm(db, config)
    counts: dict[str, list[int]] = {s.name: [] for s in config.segments}
    for row in rows:
        counts.setdefault(row.segment, []).append(row.monetary)
    total = len(rows) or 1
    return [(name, len(values), f"{len(values) / total:.0%}", f"¥{sum(values) // len(values):,}" if values else "-")
            for name, values in counts.items()]  # fmt: skip


class SegmentsScreen(_Reading):
    MAX_AGE_S = 60.0  # scoring every member is seconds of work at a million members: not every refresh tick

    def __init__(self) -> None:
        super().__init__()
        self._cached: tuple[float, Any] | None = None

    def compose(self) -> ComposeResult:
        yield header()
        yield Static("loading…", id="hint")
        yield DataTable(id="segments", cursor_type="row")
        yield KeyHints()

    def on_mount(self) -> None:
        table = self.query_one("#segments", DataTable)
        for label, width in (("Segment", 14), ("Members", 9), ("Share", 6), ("Mean ¥", 12)):
            table.add_column(label, width=width)
        self.title = "Member segments (RFM)"

    def read(self) -> Any:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self.MAX_AGE_S:
            return self._cached[1]
        # Its own connection: the monitor's belongs to HqData's lock.
        db = Central(self.app.data.db_url, create=False)  # type: ignore[attr-defined]
        try:
            rows = segment_table(db)
        finally:
            db.close()
        self._cached = (now, rows)
        return rows

    def show(self, rows: Any) -> None:
        fill(self.query_one("#segments", DataTable), rows, [r[0] for r in rows])
        members = sum(r[1] for r in rows)
        hint = f"{members} members with a purchase, by segment (tenpo cloud analytics refresh keeps them current)"
        self.query_one("#hint", Static).update(hint if members else "no member purchases analysed yet")
