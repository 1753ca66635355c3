"""The HQ monitor's first screen (issue 14): name, password and, for an account with TOTP, the code.
Nothing of HQ is shown before a good sign-in; a refusal says why in one line (tenpo.cloud.operators)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Button, Input, Label, Static

from tenpo.cloud.db import Central
from tenpo.cloud.operators.accounts import Operator, sign_in
from tenpo.cloud.operators.roles import refusal
from tenpo.shared.errors import TenpoError
from tenpo.shared.terminal import safe_text

CSS = """
SignInScreen { align: center middle; }
SignInScreen > Vertical { width: 56; height: auto; border: thick $accent; padding: 1 2; background: $surface; }
SignInScreen Input { margin-bottom: 1; }
#signin-error { color: $error; height: auto; }
"""


class SignInScreen(Screen[None]):
    DEFAULT_CSS = CSS
    BINDINGS = [Binding("ctrl+q", "app.quit", "Quit")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Tenpo HQ — sign in")
            yield Input(placeholder="operator name", id="name", max_length=64)
            yield Input(placeholder="password", id="password", password=True, max_length=1024)
            yield Input(placeholder="TOTP code (admins; anyone enrolled)", id="code", max_length=8)
            yield Button("Sign in", id="signin", variant="primary")
            yield Static("", id="signin-error")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the name goes on to the password; in the password or the code it signs in (an account
        that needs a code and has none is told so, and the cursor waits in the code field)."""
        if event.input.id == "name":
            self.query_one("#password", Input).focus()
        else:
            self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.submit()

    def submit(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        password = self.query_one("#password", Input).value
        code = self.query_one("#code", Input).value.strip() or None
        if not name or not password:
            self.query_one("#signin-error", Static).update("name and password, please")
            return
        self.query_one("#signin", Button).disabled = True
        self._check(name, password, code)

    @work(thread=True, exclusive=True, group="signin", exit_on_error=False)
    def _check(self, name: str, password: str, code: str | None) -> None:
        app: Any = self.app
        operator: Operator | None = None
        try:
            db = Central(app.data.db_url, create=False)
            try:
                operator = sign_in(db, name, password, code, via="monitor")
            finally:
                db.close()
            why = refusal(operator.name, operator.role, "monitor.view")
            message = why or ""
        except TenpoError as exc:
            message = str(exc)
        except Exception as exc:  # noqa: BLE001 - a database fault: one line, the screen stays
            message = f"cannot check the sign-in: {exc}"
        app.call_from_thread(self._done, operator if not message else None, message)

    def _done(self, operator: Operator | None, message: str) -> None:
        self.query_one("#signin", Button).disabled = False
        if operator is None and "needs a TOTP code" in message:
            self.query_one("#code", Input).focus()
        else:
            self.query_one("#password", Input).value = ""
            self.query_one("#code", Input).value = ""
        if operator is None:
            self.query_one("#signin-error", Static).update(Text(safe_text(message)))
            return
        self.app.signed_in(operator)  # type: ignore[attr-defined]
