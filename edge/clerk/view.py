"""Pieces every clerk panel uses: formatting, a panel that loads in a worker, a flicker-free table
update, and a form dialog that shows each bad field's message under that field."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.dom import DOMNode
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static
from textual.worker import Worker

from tenpo.shared.errors import UserError
from tenpo.shared.field_bounds import MAX_FIELD_CHARS  # issue 14: inputs bounded
from tenpo.shared.terminal import safe_text


def yen(amount: int | None) -> str:
    return "-" if amount is None else f"¥{amount:,}"


def clock_time(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%H:%M", time.localtime(ts))


def day_time(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%m-%d %H:%M", time.localtime(ts))


def fit(text: str, width: int) -> str:
    """Cut to ``width`` terminal cells (a full-width character takes two), marking the cut with …."""
    if cell_len(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = cell_len(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def right(text: str) -> Text:
    return Text(text, justify="right")


Row = tuple[str, tuple[Any, ...]]  # (row key, cells)


def sync_table(table: DataTable[Any], rows: Sequence[Row]) -> None:
    """Make ``table`` show ``rows`` touching only what changed, so a live refresh does not flicker.

    Same keys in the same order: changed cells are updated in place. Otherwise the rows are rebuilt
    (a new arrival at the top), keeping the cursor on the row it was on.
    """
    # A str cell would be read as markup: customer text goes in as Text, its escapes shown, never obeyed.
    rows = [(key, tuple(Text(safe_text(c)) if isinstance(c, str) else c for c in cells)) for key, cells in rows]
    keys = [key for key, _ in rows]
    current = [row_key.value for row_key in table.rows]
    column_keys = list(table.columns)
    if keys == current:
        for key, cells in rows:
            old = table.get_row(key)
            for index, (before, after) in enumerate(zip(old, cells)):
                if _plain(before) != _plain(after):
                    table.update_cell(key, column_keys[index], after, update_width=True)
        return
    selected = current[table.cursor_row] if current and 0 <= table.cursor_row < len(current) else None
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if selected in keys:
        table.move_cursor(row=keys.index(selected), animate=False)


def _plain(value: Any) -> Any:
    return value.plain if isinstance(value, Text) else value


def selected_key(table: DataTable[Any]) -> str | None:
    if table.row_count == 0:
        return None
    row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    return row_key.value


Answer = TypeVar("Answer")


def if_answered(then: Callable[[Answer], object]) -> Callable[[Answer | None], None]:
    """A dialog's dismiss callback that runs ``then`` only when the dialog gave an answer (a cancelled
    one gives None, a declined confirmation False)."""

    def callback(answer: Answer | None) -> None:
        if answer:
            then(answer)

    return callback


def run_async(node: DOMNode, work: Callable[[], Coroutine[Any, Any, None]], *, group: str,
              exclusive: bool = False) -> Worker[None]:
    """``node.run_worker(work)`` for a coroutine function. Textual's WorkType union matches one twice (as a
    coroutine function and as a plain callable returning a coroutine), so mypy cannot infer the result
    type at the call; naming it here keeps every call site typed."""
    worker: Worker[None] = node.run_worker(work, group=group, exclusive=exclusive)
    return worker


class Panel(Vertical):
    """A tab's content: ``fetch`` runs in a thread, ``show`` paints the result on the UI thread.

    ``LIVE`` panels are reloaded when the database changes (the app watches PRAGMA data_version).
    A newer load cancels an older one still waiting (exclusive worker per panel).
    """

    LIVE = False
    title = ""

    def fetch(self) -> Any:
        raise NotImplementedError

    def show(self, result: Any) -> None:
        raise NotImplementedError

    def show_error(self, message: str) -> None:
        self.app.notify(message, severity="error")

    def reload(self) -> None:
        run_async(self, self._load, exclusive=True, group=f"load-{self.id}")

    async def _load(self) -> None:
        try:
            result = await asyncio.to_thread(self.fetch)
        except UserError as exc:
            self.show_error(str(exc))
            return
        self.show(result)

    def focus_first(self) -> None:
        pass


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


# ---------------------------------------------------------------------------- form dialog


@dataclass(frozen=True, slots=True)
class Field:
    key: str
    label: str
    placeholder: str = ""
    password: bool = False
    value: str = ""
    aliases: tuple[str, ...] = ()  # other names the error messages use for this field


def split_errors(message: str, fields: Sequence[Field]) -> tuple[dict[str, str], list[str]]:
    """'kana: ...; phone: ...' -> per-field messages, and those that name no field of the form."""
    names = {f.key: f.key for f in fields} | {alias: f.key for f in fields for alias in f.aliases}
    by_field: dict[str, str] = {}
    other: list[str] = []
    for part in (p.strip() for p in message.split("; ")):
        name, sep, problem = part.partition(":")
        key = names.get(name.strip()) if sep else None
        if key is None:
            other.append(part)
        else:
            by_field[key] = problem.strip()
    return by_field, other


FormResult = TypeVar("FormResult")


class FormScreen(ModalScreen[FormResult]):
    """Inputs in a column; Enter moves on, Enter on the last one submits; Esc cancels.

    ``submit(values)`` runs in a thread; a UserError's message is split over the fields it names.
    What ``submit`` returns is the dialog's result.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, fields: Sequence[Field], submit: Callable[[dict[str, str]], FormResult],
                 note: str = "") -> None:  # fmt: skip
        super().__init__()
        self.title_text = title
        self.fields = tuple(fields)
        self.submit = submit
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            if self.note:
                yield Static(self.note, classes="muted")
            for f in self.fields:
                with Horizontal(classes="form-row"):
                    yield Label(f.label, classes="form-label")
                    yield Input(value=f.value, placeholder=f.placeholder, password=f.password, compact=True,
                                id=f"in-{f.key}", max_length=MAX_FIELD_CHARS)  # fmt: skip
                yield Static("", id=f"err-{f.key}", classes="field-error")
            yield Static("", id="form-error", classes="field-error")
            yield Static("Enter next/submit · Esc cancel", classes="muted")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        keys = [f.key for f in self.fields]
        index = keys.index(event.input.id.removeprefix("in-"))  # type: ignore[union-attr]
        if index + 1 < len(keys):
            self.query_one(f"#in-{keys[index + 1]}", Input).focus()
        else:
            run_async(self, self._submit, exclusive=True, group="form")

    def values(self) -> dict[str, str]:
        return {f.key: self.query_one(f"#in-{f.key}", Input).value for f in self.fields}

    async def _submit(self) -> None:
        for f in self.fields:
            self.query_one(f"#err-{f.key}", Static).update("")
        self.query_one("#form-error", Static).update("")
        try:
            result = await asyncio.to_thread(self.submit, self.values())
        except UserError as exc:
            by_field, other = split_errors(str(exc), self.fields)
            for key, problem in by_field.items():
                self.query_one(f"#err-{key}", Static).update(Text(safe_text(f"  ✗ {problem}")))
            self.query_one("#form-error", Static).update("\n".join(f"✗ {o}" for o in other))
            first = next((f.key for f in self.fields if f.key in by_field), None)
            if first:
                self.query_one(f"#in-{first}", Input).focus()
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)
