"""`tenpo hq`: the HQ sync monitor, a Textual app over the central database and the presence topics.

Database reads run in thread workers (one connection, one call at a time); the UI thread only
copies changed cells into the table. Presence comes straight from the broker on paho's thread and
is posted to the app as a message, so a store that drops turns red without waiting for a refresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Self

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.geometry import Region
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import DataTable, Label, Sparkline, Static

from tenpo.cloud.audit.chain import act_for_process
from tenpo.cloud.authority import refusals_text
from tenpo.cloud.certs import expiry_text
from tenpo.cloud.hq import commands
from tenpo.cloud.hq.charts import ChartsScreen
from tenpo.cloud.hq.config import MonitorConfig
from tenpo.cloud.hq.data import HqData, Overview, collect_young
from tenpo.cloud.hq.model import (
    COLUMN_KEYS,
    COLUMNS,
    OK,
    Cell,
    StoreView,
    changed_cells,
    format_age,
    merge_store,
    ordered,
    row_cells,
)
from tenpo.cloud.hq.presence import Presence, PresenceListener
from tenpo.cloud.hq.review_screen import ReviewScreen
from tenpo.cloud.hq.screens import ConflictsScreen, DeadLettersScreen, StoreScreen
from tenpo.cloud.hq.segments_screen import SegmentsScreen  # issue 17 (H6)
from tenpo.cloud.hq.signin_screen import SignInScreen
from tenpo.cloud.hq.widgets import KeyHints, header
from tenpo.cloud.operators.accounts import Operator
from tenpo.shared.mqtt import BrokerUrl, TlsFiles
from tenpo.shared.terminal import safe_text

CSS = """
#summary { height: 1; padding: 0 1; background: $boost; }
.spark-row { height: 2; padding: 0 1; }
.spark-row Label { width: 16; }
.spark-row Sparkline { width: 1fr; height: 2; }
#stores { height: 1fr; }
/* The selected row keeps its own colours (red offline, yellow warning), shown reversed, so the
   cursor never hides a store's state (cursor_*_priority = "renderable" below). */
#stores > .datatable--cursor, #stores:focus > .datatable--cursor { text-style: reverse bold; }
.section { height: 1; padding: 0 1; margin-top: 1; color: $text-muted; }
#info { height: auto; padding: 0 1; }
DataTable.half { width: 1fr; height: auto; max-height: 12; }
#letters, #conflicts { height: 1fr; }
#entries { height: auto; max-height: 12; padding: 0 1; }
#hint { height: 1; padding: 0 1; color: $text-muted; }
NoteDialog, ResolveDialog { align: center middle; }
NoteDialog > Vertical, ResolveDialog > Vertical {
    width: 60; height: auto; border: thick $accent; padding: 1 2; background: $surface;
}
"""


@dataclass
class PresenceSeen(Message):
    """A verified birth, death or status from the broker (posted from paho's thread)."""

    store_id: str
    presence: Presence


class StoresTable(DataTable[Text]):
    """A DataTable that takes many cell updates for one repaint. update_cell asks for a repaint after
    every cell, and with 500 stores ~1,000 cells change each second: those repaint requests were most
    of a refresh. Inside :meth:`set_cells` the requests are held and made once at the end, through
    public API only (update_cell, refresh), so a Textual upgrade cannot silently break it."""

    _holding = False
    _held_layout = False

    def set_cells(self, changes: list[tuple[str, str, Text]]) -> None:
        if not changes:
            return
        self._holding, self._held_layout = True, False
        try:
            for row_key, column_key, value in changes:
                self.update_cell(row_key, column_key, value)
        finally:
            self._holding = False
            self.refresh(layout=self._held_layout)

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False) -> Self:
        if self._holding and not recompose:
            self._held_layout = self._held_layout or layout
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)


class StoresScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "open_store", "Store detail", show=True, priority=False),
        Binding("d", "dead_letters", "Dead letters"),
        Binding("c", "conflicts", "Conflicts"),
        Binding("g", "charts", "Charts"),
        Binding("m", "member_reviews", "Member reviews"),
        Binding("e", "segments", "Segments"),  # issue 17 (H6)
        Binding("a", "sort_attention", "Attention first"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.overview: Overview | None = None
        self.views: dict[str, StoreView] = {}
        self._shown: dict[str, tuple[Cell, ...]] = {}
        self._order: list[str] = []
        self.sort_column: str | None = None  # None: attention first
        self.sort_reverse = False
        self._loading = False
        self.last_apply_ms = 0.0  # UI-thread time of the last database refresh
        self.last_presence_ms = 0.0  # ... and of the last presence message
        self.refreshes = 0

    @property
    def hq(self) -> HqApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield header()
        yield Static("loading…", id="summary")
        with Horizontal(classes="spark-row"):
            yield Label("all stores ev/s", id="spark-label")
            yield Sparkline([], id="total")
        yield StoresTable(id="stores", cursor_type="row", zebra_stripes=False, cursor_foreground_priority="renderable",
                          cursor_background_priority="renderable")  # fmt: skip
        yield KeyHints()

    def on_mount(self) -> None:
        table = self.query_one("#stores", DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, width=width, key=key)
        self.set_interval(self.hq.config.interval_s, self.request_refresh)
        self.request_refresh()

    # ------------------------------------------------------------------ loading

    def request_refresh(self) -> None:
        if not self._loading:  # a slow database must not pile up workers
            self._loading = True
            self._load()

    @work(thread=True, group="stores", exit_on_error=False)
    def _load(self) -> None:
        try:
            overview = self.hq.data.overview()
            self.app.call_from_thread(self.apply_overview, overview)
        except RuntimeError:  # the app is closing
            pass
        except Exception as exc:
            self.app.call_from_thread(self.app.notify, f"database: {exc}", severity="error")
        finally:
            self._loading = False

    def apply_overview(self, overview: Overview) -> None:
        started = time.perf_counter()
        self.overview = overview
        now = self.hq.clock()
        zeros = (0,) * self.hq.config.buckets
        conflicts = overview.conflicts
        self.views = {
            r["store_id"]: merge_store(
                r, self.hq.presence.get(r["store_id"]), overview.per_minute.get(r["store_id"], 0),
                None if conflicts is None else conflicts.get(r["store_id"], 0),
                overview.trends.get(r["store_id"], zeros), self.hq.config, now,
            )  # fmt: skip
            for r in overview.records
        }
        self._paint(now)
        self._summary(overview)
        spark = self.query_one("#total", Sparkline)
        if list(spark.data or []) != list(overview.total_rate):
            spark.data = list(overview.total_rate)
            window = format_age(self.hq.config.buckets * self.hq.config.bucket_s)
            peak = max(overview.total_rate, default=0.0)
            self.query_one("#spark-label", Label).update(f"ev/s, last {window}\npeak {peak:.1f}/s")
        self.last_apply_ms = (time.perf_counter() - started) * 1000
        self.refreshes += 1
        self.call_after_refresh(collect_young)  # the garbage of this repaint goes while the screen is idle
        self.hq.loaded()

    def presence_changed(self, message: PresenceSeen) -> None:
        """Repaint just that store's row, now: the next database refresh may be up to a second away."""
        started = time.perf_counter()
        record_view = self.views.get(message.store_id)
        if record_view is None or self.overview is None:
            return
        record = next((r for r in self.overview.records if r["store_id"] == message.store_id), None)
        if record is None:
            return
        now = self.hq.clock()
        self.views[message.store_id] = merge_store(
            record, message.presence, record_view.events_per_min, record_view.open_conflicts, record_view.trend,
            self.hq.config, now,
        )  # fmt: skip
        self._paint(now, only=message.store_id)
        self.last_presence_ms = (time.perf_counter() - started) * 1000

    # ------------------------------------------------------------------ painting

    def _paint(self, now: float, only: str | None = None) -> None:
        table = self.query_one("#stores", StoresTable)
        if only is None:
            for gone in set(self._shown) - set(self.views):
                table.remove_row(gone)
                del self._shown[gone]
        changes: list[tuple[str, str, Text]] = []
        for store_id in (only,) if only else self.views:
            cells = row_cells(self.views[store_id], now)
            old = self._shown.get(store_id)
            if old is None:
                table.add_row(*(Text(t, style=s) for t, s in cells), key=store_id)
            else:
                changes += [(store_id, COLUMN_KEYS[i], Text(cells[i][0], style=cells[i][1])) for i in changed_cells(old, cells)]
            self._shown[store_id] = cells
        table.set_cells(changes)
        self._reorder(table)

    def _reorder(self, table: DataTable[Text]) -> None:
        order = ordered(list(self.views.values()), self.sort_column, self.sort_reverse)
        if order == self._order:
            return
        selected = self.selected_store()
        rank = {store_id: i for i, store_id in enumerate(order)}
        table.sort("store", key=lambda cell: rank.get(cell.plain, len(rank)))
        self._order = order
        if selected in rank:
            table.move_cursor(row=rank[selected], animate=False)

    def _summary(self, o: Overview) -> None:
        views = self.views.values()
        online = sum(1 for v in views if v.online)
        attention = sum(1 for v in views if v.level != OK)
        per_minute = sum(o.per_minute.values())
        conflicts = "no conflicts table" if o.conflicts is None else f"{sum(o.conflicts.values())} open conflicts"
        text = (f"{online}/{len(self.views)} online · {attention} need attention · {per_minute} ev/min · "
                f"{o.open_dead_letters} open dead letters · {conflicts} · change {o.latest_change}")  # fmt: skip
        if o.cert_expiring:  # issue 14: first, so it shows on a narrow terminal
            text = f"{expiry_text(list(o.cert_expiring))} · {text}"
        if o.authority:  # issue 14: refusals of store authority (docs/authority.md), first of all
            text = f"{refusals_text(o.authority)} · {text}"
        self.query_one("#summary", Static).update(text)

    # ------------------------------------------------------------------ actions

    def selected_store(self) -> str | None:
        table = self.query_one("#stores", DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        self.sort_by(str(event.column_key.value))

    def action_sort_attention(self) -> None:
        self.sort_column, self.sort_reverse = None, False
        self._reorder(self.query_one("#stores", DataTable))

    def sort_by(self, column: str) -> None:
        """As a click on the column's header: numbers largest first, names A to Z; again reverses."""
        self.sort_reverse = (not self.sort_reverse) if column == self.sort_column else column not in ("store", "name")
        self.sort_column = column
        self._reorder(self.query_one("#stores", DataTable))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_store()

    def action_dead_letters(self) -> None:
        self.app.push_screen(DeadLettersScreen())

    def action_conflicts(self) -> None:
        self.app.push_screen(ConflictsScreen())

    def action_charts(self) -> None:
        self.app.push_screen(ChartsScreen())

    def action_member_reviews(self) -> None:
        self.app.push_screen(ReviewScreen())

    def action_segments(self) -> None:  # issue 17 (H6): members per RFM segment
        self.app.push_screen(SegmentsScreen())

    def action_open_store(self) -> None:
        store_id = self.selected_store()
        if store_id is not None:
            self.app.push_screen(StoreScreen(store_id))


class HqApp(App[None]):
    TITLE = "Tenpo HQ"
    SUB_TITLE = "sync monitor"
    CSS = CSS
    BINDINGS = [Binding("s", "screenshot", "Screenshot")]

    def __init__(
        self, data: HqData, broker: BrokerUrl | None = None, tls: TlsFiles | None = None,
        clock: Callable[[], float] | None = None, screenshot_dir: Path | None = None,
        operator: Operator | None = None,
    ) -> None:  # fmt: skip
        """``operator``: already signed in (tests); None (`tenpo hq`, `--serve`) opens the sign-in screen first."""
        super().__init__()
        self.operator = operator  # issue 14: roles decide the actions (cloud/operators/roles.py)
        if operator is not None:
            act_for_process(operator.name)
        self.data = data
        self.screenshot_dir = screenshot_dir or Path.cwd()
        self.last_screenshot: Path | None = None
        self.config: MonitorConfig = data.config
        self.clock = clock or data.clock
        self.presence: dict[str, Presence] = {}
        self.listener = (
            PresenceListener(data.db_url, broker, self._presence_from_thread, self.clock, tls) if broker else None
        )

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Messages quote customer text and typed input: plain text by default, escapes shown."""
        super().notify(safe_text(message, multiline=True), title=safe_text(title), severity=severity, timeout=timeout,
                       markup=markup)

    def get_default_screen(self) -> Screen[None]:
        return StoresScreen() if self.operator is not None else SignInScreen()

    def signed_in(self, operator: Operator) -> None:
        """After a good sign-in: act as this operator, and only now show HQ."""
        self.operator = operator
        act_for_process(operator.name)
        self.push_screen(StoresScreen())  # over the sign-in screen, which has dropped what was typed

    def permitted(self, action: str) -> bool:
        """Whether the signed-in operator's role allows ``action``; if not, a notice says why."""
        why = "not signed in" if self.operator is None else self.operator.refusal(action)
        if why is not None:
            self.notify(f"refused: {why}", severity="error")
        return why is None

    def on_mount(self) -> None:
        if self.listener is not None:
            self.listener.start()

    def on_unmount(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        self.data.close()

    def _presence_from_thread(self, store_id: str, presence: Presence) -> None:
        self.post_message(PresenceSeen(store_id, presence))

    def on_presence_seen(self, message: PresenceSeen) -> None:
        self.presence[message.store_id] = message.presence
        stores = self.stores_screen
        if stores is not None:
            stores.presence_changed(message)

    @property
    def stores_screen(self) -> StoresScreen | None:
        return next((s for s in self.screen_stack if isinstance(s, StoresScreen)), None)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette: every key of this screen, the sort orders on the stores table, then Textual's own
        (theme, keys...) except its screenshot, which ours replaces."""
        mine = list(commands.screen_commands(self, screen))
        if isinstance(screen, StoresScreen):
            mine += [SystemCommand(f"Sort by {label}", "as a click on the column header; again to reverse",
                                   partial(screen.sort_by, key)) for key, label, _ in COLUMNS]  # fmt: skip
        titles = {c.title for c in mine}
        yield from mine
        yield from (c for c in super().get_system_commands(screen) if c.title not in titles | {"Screenshot"})

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """An SVG of the screen for a support call, mode 0600, in the screenshot folder (--screenshots)."""
        try:
            self.last_screenshot = commands.save_screenshot(self.export_screenshot(), self.screenshot_dir, self.clock())
        except OSError as exc:
            self.notify(f"screenshot not saved: {exc}", severity="error")
            return
        self.notify(f"screenshot saved: {self.last_screenshot}")

    def loaded(self) -> None:
        """Hook for tests and the benchmark: called after every applied refresh."""
