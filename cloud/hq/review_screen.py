"""The monitor's member review screen (key `m` on the stores screen): possible matches waiting for a
person, best score first, each with both records' masked values and the comparisons that decided it;
`a` accepts (merges, through the feed), `x` rejects, each with an optional note. Decisions are audited
under the operator's login name (tenpo.cloud.members.review_actions).
"""

from __future__ import annotations

import getpass
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from tenpo.cloud.db import Central
from tenpo.cloud.hq.screens import _Reading, fill
from tenpo.cloud.hq.widgets import KeyHints, header
from tenpo.cloud.members.review import ReviewItem, pending_items
from tenpo.cloud.members.review_actions import decide_item

__all__ = ["ReviewScreen"]


def _operator() -> str:
    try:
        return f"hq:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "hq"


class NoteDialog(ModalScreen[str | None]):
    """One line: why. Enter confirms (an empty note is fine), Esc cancels."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            yield Input(placeholder="note (optional), Enter to confirm", id="note")

    def on_mount(self) -> None:
        self.query_one("#note", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())


def pair_text(item: ReviewItem) -> str:
    """Both records' masked values side by side, then the comparisons, strongest first."""
    left, right = dict(item.left_values or {}), dict(item.right_values or {})
    lines = [f"{':'.join(item.left)}  ({item.left_member})   vs   {':'.join(item.right)}  ({item.right_member})"]
    for field in dict.fromkeys([*left, *right]):
        lines.append(f"  {field:<11} {left.get(field, '-'):<22} {right.get(field, '-')}")
    lines.append("  " + ", ".join(f"{f} {level} {w:+g}" for f, level, w in item.comparisons if w) or "  (no evidence)")
    return "\n".join(lines)


class ReviewScreen(_Reading):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("a", "accept", "Accept (merge)…"),
                Binding("x", "reject", "Reject…")]  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.items: list[ReviewItem] = []

    def compose(self) -> ComposeResult:
        yield header()
        yield Static("loading…", id="hint")
        yield DataTable(id="reviews", cursor_type="row")
        yield Static("", id="pair")
        yield KeyHints()

    def on_mount(self) -> None:
        table = self.query_one("#reviews", DataTable)
        for label, width in (("Id", 4), ("Score", 5), ("Left", 22), ("Right", 22), ("Evidence", 30)):
            table.add_column(label, width=width)
        self.title = "Member reviews"

    def _db(self) -> Central:
        # Its own connection per call: decisions and reads run in worker threads, the monitor's own
        # connection belongs to HqData's lock.
        return Central(self.hq.data.db_url, create=False)

    def read(self) -> Any:
        db = self._db()
        try:
            return pending_items(db, limit=200)
        finally:
            db.close()

    def show(self, items: Any) -> None:
        self.items = list(items)
        cells = [(i.item_id, f"{i.score:g}", ":".join(i.left), ":".join(i.right),
                  ", ".join(f"{f} {level}" for f, level, w in i.comparisons if w > 0)) for i in self.items]  # fmt: skip
        fill(self.query_one("#reviews", DataTable), cells, [str(i.item_id) for i in self.items])
        hint = "no possible matches waiting"
        if self.items:
            hint = f"{len(self.items)} possible matches · a accept (merge) · x reject"
        self.query_one("#hint", Static).update(hint)
        self._show_pair()

    def selected(self) -> ReviewItem | None:
        table = self.query_one("#reviews", DataTable)
        if not self.items or table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return next((i for i in self.items if str(i.item_id) == row_key.value), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_pair()

    def _show_pair(self) -> None:
        item = self.selected()
        self.query_one("#pair", Static).update(pair_text(item) if item else "")

    def _ask(self, accept: bool) -> None:
        if not self.hq.permitted("review.accept" if accept else "review.reject"):
            return  # roles (issue 14): accepting is a merge, an admin's
        item = self.selected()
        if item is None:
            return
        verb = "Accept: merge" if accept else "Reject: keep apart"
        def decide(note: str | None) -> None:
            if note is not None:
                self._decide(item.item_id, accept, note)

        self.app.push_screen(NoteDialog(f"{verb} #{item.item_id} ({':'.join(item.left)} / {':'.join(item.right)})"), decide)

    def action_accept(self) -> None:
        self._ask(True)

    def action_reject(self) -> None:
        self._ask(False)

    @work(thread=True, group="actions", exit_on_error=False)
    def _decide(self, item_id: int, accept: bool, note: str) -> None:
        db = self._db()
        try:
            done = decide_item(db, item_id, accept, actor=_operator(), note=note or None)
            merged = f": merged {done.loser} into {done.winner}" if done.merge_id is not None else ""
            message, severity = f"review #{item_id} {done.status}{merged}", "information"
        except Exception as exc:
            message, severity = f"review #{item_id}: {exc}", "error"
        finally:
            db.close()
        self.app.call_from_thread(self.app.notify, message, severity=severity)
        self.app.call_from_thread(self.reload)
