"""The monitor's secondary screens: one store in detail, dead letters, conflicts, and their dialogs.

Each screen reads in a thread worker and paints on the UI thread; actions go through
``tenpo.cloud.hq.actions`` / ``tenpo.cloud.hq.conflicts`` via the app's HqData.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, Label, OptionList, Sparkline, Static

from tenpo.cloud.hq import describe
from tenpo.cloud.hq.conflicts import resolution_actions
from tenpo.cloud.hq.model import format_age
from tenpo.cloud.hq.queries import StoreDetail, sequence_gap
from tenpo.cloud.hq.widgets import KeyHints, header
from tenpo.shared.terminal import safe_text

if TYPE_CHECKING:
    from tenpo.cloud.hq.app import HqApp


def ago(now: float, at: float | None) -> str:
    return "-" if at is None else format_age(now - at)


def readable_cell(column: str, value: Any, now: float) -> Any:
    """Times as local times with their age, an inspection's JSON summary as counts."""
    if column in describe.TIME_KEYS and isinstance(value, (int, float)):
        return describe.local_time(float(value), now)
    if column == "summary":
        return describe.inspection_summary(value)
    return value


def fill(table: DataTable[Text], rows: Sequence[Sequence[Any]], keys: Sequence[str] | None = None) -> None:
    """Replace a small table's rows, keeping the cursor where it was."""
    row = table.cursor_row
    table.clear()
    for i, values in enumerate(rows):
        # Text, never markup, with escapes shown: names and dead-letter reasons come from stores and customers
        table.add_row(*(Text(safe_text("-" if v is None else str(v))) for v in values), key=keys[i] if keys else None)
    if rows:
        table.move_cursor(row=min(row, len(rows) - 1), animate=False)


class _Reading(Screen[None]):
    """A screen that reloads from the database in a worker every refresh interval."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    @property
    def hq(self) -> HqApp:
        """The monitor these screens run in (Screen.app is typed as any App)."""
        return cast("HqApp", self.app)

    def on_mount(self) -> None:  # runs after the subclass's own on_mount (Textual walks the MRO)
        self.set_interval(self.hq.config.interval_s, self.reload)
        self.reload()

    @work(thread=True, exclusive=True, group="screen", exit_on_error=False)
    def reload(self) -> None:
        try:
            result = self.read()
            self.app.call_from_thread(self.show, result)
        except RuntimeError:  # closing
            pass
        except Exception as exc:
            self.app.call_from_thread(self.app.notify, f"database: {exc}", severity="error")

    def read(self) -> Any:
        raise NotImplementedError

    def show(self, result: Any) -> None:
        raise NotImplementedError


class StoreScreen(_Reading):
    def __init__(self, store_id: str) -> None:
        super().__init__()
        self.store_id = store_id
        self.shown = 0

    def compose(self) -> ComposeResult:
        yield header()
        with VerticalScroll():
            yield Static("loading…", id="info")
            with Horizontal(classes="spark-row"):
                yield Label("ev/s, this store")
                yield Sparkline([], id="rate")
            with Horizontal(classes="section-row"):
                yield DataTable(id="types", classes="half", cursor_type="none")
                yield DataTable(id="dead", classes="half", cursor_type="none")
            yield Label("Dock inspections", classes="section")
            yield DataTable(id="inspections", cursor_type="none")
        yield KeyHints()

    def on_mount(self) -> None:
        self.query_one("#types", DataTable).add_columns("Recent events by type", "count", "newest seq")
        self.query_one("#dead", DataTable).add_columns("Dead letter", "reason", "status")
        self.title = f"Store {self.store_id}"

    def read(self) -> tuple[StoreDetail | None, tuple[float, ...]]:
        return self.hq.data.store_detail(self.store_id)

    def show(self, result: tuple[StoreDetail | None, tuple[float, ...]]) -> None:
        detail, rate = result
        app: Any = self.app
        if detail is None:
            self.query_one("#info", Static).update(f"store {self.store_id} is not registered")
            return
        now = app.clock()
        self.query_one("#info", Static).update(self.describe(detail, now))
        self.query_one("#rate", Sparkline).data = list(rate)
        fill(self.query_one("#types", DataTable), detail.event_types)
        letters = [(f"#{d.id} {describe.local_time(d.received_at, now)}", d.reason, d.status) for d in detail.dead_letters]
        fill(self.query_one("#dead", DataTable), letters)
        table = self.query_one("#inspections", DataTable)
        if detail.inspections is None:
            if not table.columns:
                table.add_column("no inspections table yet")
        else:
            columns, rows = detail.inspections
            if not table.columns:
                table.add_columns(*columns)
            fill(table, [tuple(readable_cell(c, v, now) for c, v in zip(columns, r)) for r in rows])
        self.shown += 1

    def describe(self, d: StoreDetail, now: float) -> str:
        app: Any = self.app
        stores = app.stores_screen
        view = stores.views.get(d.store_id) if stores is not None else None
        presence = app.presence.get(d.store_id)
        lines = [f"[b]{d.store_id}[/b] {d.name} · stream {d.stream or '-'}"]
        if view is not None:
            state = (f"online, seen {describe.local_time(view.last_seen, now)}" if view.online
                     else f"OFFLINE since {describe.local_time(view.since, now)}")  # fmt: skip
            lines[0] += f" · {state} · agent {view.agent_version or '-'} schema {view.schema_version or '-'}"
        store_seq = presence.last_seq if presence is not None else None
        gap = sequence_gap(store_seq, d.last_applied_seq)
        gap_text = "store has not reported its seq" if gap is None else ("no gap" if gap == 0 else f"gap of {gap}")
        lines.append(f"upstream: HQ applied seq {d.last_applied_seq}, store wrote {store_seq if store_seq is not None else '-'}"
                     f" → {gap_text}")  # fmt: skip
        cursor = "-" if d.cursor is None else str(d.cursor)
        behind = "" if d.cursor is None else f" ({max(0, d.latest_change - d.cursor)} behind)"
        lines.append(f"downstream: cursor {cursor} of latest change {d.latest_change}{behind}")
        if view is not None and view.reasons:
            lines.append(f"[b red]attention:[/] {', '.join(view.reasons)}")
        return "\n".join(lines)


class NoteDialog(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield Input(placeholder="note (required), Enter to confirm", id="note")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())


class DeadLettersScreen(_Reading):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "retry", "Retry"),
        Binding("x", "discard", "Discard…"),
        Binding("a", "toggle_all", "Open/all"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.include_closed = False
        self.letters: list[Any] = []

    def compose(self) -> ComposeResult:
        yield header()
        yield Static("loading…", id="hint")
        yield DataTable(id="letters", cursor_type="row")
        yield KeyHints()

    def on_mount(self) -> None:
        table = self.query_one("#letters", DataTable)
        for label, width in (("#", 4), ("Age", 4), ("Store", 7), ("Status", 9), ("Reason", 34), ("Payload", 60)):
            table.add_column(label, width=width)
        self.title = "Dead letters"

    def read(self) -> list[Any]:
        return self.hq.data.dead_letters(self.include_closed)

    def show(self, letters: list[Any]) -> None:
        now = self.hq.clock()
        self.letters = letters
        fill(self.query_one("#letters", DataTable),
             [(d.id, ago(now, d.received_at), d.store_id, d.status, d.reason, d.payload_preview) for d in letters],
             [str(d.id) for d in letters])  # fmt: skip
        which = "all" if self.include_closed else "open"
        self.query_one("#hint", Static).update(f"{len(letters)} {which} dead letters · r retry · x discard with a note")

    def selected(self) -> int | None:
        table = self.query_one("#letters", DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return None if row_key.value is None else int(row_key.value)

    def action_toggle_all(self) -> None:
        self.include_closed = not self.include_closed
        self.reload()

    def action_retry(self) -> None:
        if not self.hq.permitted("dead_letter.retry"):  # roles (issue 14)
            return
        letter = self.selected()
        if letter is not None:
            self._act(letter, None)

    def action_discard(self) -> None:
        if not self.hq.permitted("dead_letter.discard"):  # roles (issue 14)
            return
        letter = self.selected()
        if letter is not None:
            def discard(note: str | None) -> None:
                if note:
                    self._act(letter, note)

            self.app.push_screen(NoteDialog(f"Discard dead letter #{letter}: why?"), discard)

    @work(thread=True, group="actions", exit_on_error=False)
    def _act(self, letter: int, discard_note: str | None) -> None:
        data = self.hq.data
        try:
            if discard_note is None:
                outcome = data.retry(letter)
                message, severity = f"#{letter}: {outcome.result} — {outcome.detail}", (
                    "information" if outcome.closed else "warning")  # fmt: skip
            else:
                data.discard(letter, discard_note)
                message, severity = f"#{letter}: discarded", "information"
        except Exception as exc:
            message, severity = f"#{letter}: {exc}", "error"
        self.app.call_from_thread(self.app.notify, message, severity=severity)
        self.app.call_from_thread(self.reload)


class ResolveDialog(ModalScreen[tuple[str, str] | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, conflict_id: str, actions: Sequence[str]) -> None:
        super().__init__()
        self.conflict_id = conflict_id
        self.actions = list(actions)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Resolve conflict {self.conflict_id}: choose, then write a note")
            yield OptionList(*(describe.action_choice(a) for a in self.actions), id="choice")
            yield Input(placeholder="note (required), Enter to confirm", id="note")

    def on_mount(self) -> None:
        choice = self.query_one("#choice", OptionList)
        choice.highlighted = 0
        choice.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        choice = self.query_one("#choice", OptionList).highlighted
        if choice is not None and event.value.strip():
            self.dismiss((self.actions[choice], event.value.strip()))


class ConflictsScreen(_Reading):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("r", "resolve", "Resolve…")]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Any] | None = None

    def compose(self) -> ComposeResult:
        yield header()
        yield Static("loading…", id="hint")
        yield DataTable(id="conflicts", cursor_type="row")
        yield Static("", id="entries")
        yield KeyHints()

    def on_mount(self) -> None:
        table = self.query_one("#conflicts", DataTable)
        for label, width in (("Id", 4), ("Kind", 15), ("Store", 6), ("Subject", 14), ("Level", 6), ("Age", 4),
                             ("Detail", 50)):  # fmt: skip
            table.add_column(label, width=width)
        self.title = "Conflicts"

    def read(self) -> Any:
        return self.hq.data.conflicts()

    def show(self, rows: Any) -> None:
        self.rows = rows
        table = self.query_one("#conflicts", DataTable)
        if rows is None:
            table.display = False
            self.query_one("#hint", Static).update("no conflicts table: the sales area has not created it yet")
            return
        table.display = True
        now = self.hq.clock()
        cells = [(c.id, c.kind, c.store_id, c.subject, c.level, ago(now, c.at), describe.conflict_detail(c.kind, c.detail, now))
                 for c in rows]  # fmt: skip
        fill(table, cells, [c.id for c in rows])
        self.query_one("#hint", Static).update(f"{len(rows)} open conflicts · r resolve the selected one")
        self._show_entries()

    def selected(self) -> Any:
        table = self.query_one("#conflicts", DataTable)
        if not self.rows or not table.display or table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return next((c for c in self.rows if c.id == row_key.value), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_entries()

    def _show_entries(self) -> None:
        conflict = self.selected()
        text = ""
        if conflict is not None:
            now = self.hq.clock()
            lines = [describe.conflict_entry(e, now) for e in conflict.entries] or ["(none listed)"]
            choices = [f"  {describe.action_choice(a)}" for a in resolution_actions(conflict.kind)]
            text = "\n".join([f"detected {describe.local_time(conflict.at, now)} · entries on both sides:", *lines,
                              "r resolve, choosing:", *choices])  # fmt: skip
        self.query_one("#entries", Static).update(text)

    def action_resolve(self) -> None:
        if not self.hq.permitted("conflict.resolve"):  # roles (issue 14)
            return
        conflict = self.selected()
        actions = resolution_actions(conflict.kind) if conflict is not None else ()
        if conflict is None or not actions:
            return
        def resolve(choice: tuple[str, str] | None) -> None:
            if choice:
                self._resolve(conflict.id, *choice)

        self.app.push_screen(ResolveDialog(conflict.id, actions), resolve)

    @work(thread=True, group="actions", exit_on_error=False)
    def _resolve(self, conflict_id: str, action: str, note: str) -> None:
        try:
            self.hq.data.resolve_conflict(conflict_id, action, note)
            message, severity = f"conflict {conflict_id}: {action}", "information"
        except Exception as exc:
            message, severity = f"conflict {conflict_id}: {exc}", "error"
        self.app.call_from_thread(self.app.notify, message, severity=severity)
        self.app.call_from_thread(self.reload)
