"""Small dialogs every panel uses: a yes/no confirmation and a manager's approval on the spot.

Approval is a dialog over the clerk's screen, so whatever the clerk was doing (a basket, a selected
row) is still there when it closes. A manager signed in approves their own actions without a dialog.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tenpo.edge.clerk.accounts import Clerk
from tenpo.edge.clerk.view import Field, FormScreen

if TYPE_CHECKING:
    from tenpo.edge.clerk.app import ClerkApp


class ConfirmScreen(ModalScreen[bool]):
    """Enter (or y) confirms, Esc (or n) goes back."""

    BINDINGS = [
        Binding("enter,y", "answer(True)", "Yes"),
        Binding("escape,n", "answer(False)", "No"),
    ]

    def __init__(self, title: str, body: str | Text, yes: str = "Enter yes") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            yield Static(self.body, id="confirm-body")
            yield Static(f"{self.yes} · Esc no", classes="muted")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


MANAGER_FIELDS = (
    Field("manager", "店長 manager id", "e.g. 1001"),
    Field("pin", "暗証番号 PIN", "digits, not shown", password=True),
)


def with_manager(app: ClerkApp, what: str, then: Callable[[Clerk | None], None]) -> None:
    """Run ``then(approver)``: at once for a manager signed in (approver None), else after a manager's
    id and PIN are accepted (same scrypt check and lockout as sign-in). Esc cancels and ``then`` is not run."""
    clerk = app.clerk
    if clerk is not None and clerk.is_manager:
        then(None)
        return

    def submit(values: dict[str, str]) -> Clerk:
        return app.data.check_manager(values["manager"], values["pin"])

    def done(manager: Clerk | None) -> None:
        if manager is not None:
            then(manager)

    note = f"{what}: a manager approves with their id and PIN; the till stays as it is"
    app.push_screen(FormScreen("店長承認 · manager approval", MANAGER_FIELDS, submit, note), done)
