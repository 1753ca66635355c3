"""`tenpo clerk`: the clerk terminal, a Textual app on the store's SQLite file.

It needs no agent: it reads and writes the replica directly (WAL lets it share the file with the
agent). Database calls run in worker threads; the UI thread only paints. Live panels (home,
arrivals, dock) re-query when ``PRAGMA data_version`` on a watch connection moves, checked every
half second, so a delivery read by the agent or a member walking in appears without polling queries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from tenpo.edge.clerk.accounts import Clerk, SignInRefused
from tenpo.edge.clerk.data import ClerkData
from tenpo.edge.clerk.members import MembersPanel
from tenpo.edge.clerk.panels import ArrivalsPanel, DockPanel, HomePanel, StockPanel
from tenpo.edge.clerk.till import CheckoutPanel
from tenpo.edge.clerk.view import Panel, in_thread

WATCH_INTERVAL_S = 0.5

CSS = """
#status { height: 1; padding: 0 1; background: $boost; }
.muted { color: $text-muted; height: auto; }
.section { height: 1; color: $text-muted; }
.field-error { color: $error; height: auto; }
#tabs { height: 1fr; }
#tabs > ContentSwitcher { height: 1fr; }
#tabs TabPane { height: 1fr; padding: 0; }
Panel { height: 1fr; padding: 0 1; }
Panel > DataTable { height: 1fr; }
Panel > Input { margin: 0 0 1 0; }
#home-body { height: auto; }
#dock-list { height: 7; }
#dock-gtins { height: 1fr; }
#dock-progress { height: 1; }
#till-totals { height: 2; }
#profile-head { height: auto; padding: 0 1; }
#profile-tables { height: 1fr; }
#profile-tables > Vertical { width: 1fr; padding: 0 1; }
SignInScreen { align: center middle; }
SignInScreen > Vertical { width: 56; height: auto; border: thick $accent; padding: 1 2; }
SignInScreen Input { margin: 0 0 1 0; }
FormScreen, ReceiptScreen { align: center middle; }
.dialog { width: 70; height: auto; max-height: 22; border: thick $accent; padding: 0 1; background: $surface; }
.dialog-title { text-style: bold; height: auto; }
.form-row { height: 1; }
.form-label { width: 18; }
.form-row Input { width: 1fr; }
.receipt { width: 50; }
"""

PANELS: tuple[tuple[str, str, str, type[Panel]], ...] = (
    ("home", "F2 Home", "f2", HomePanel),
    ("members", "F3 Members", "f3", MembersPanel),
    ("checkout", "F4 Checkout", "f4", CheckoutPanel),
    ("stock", "F5 Stock", "f5", StockPanel),
    ("dock", "F6 Dock", "f6", DockPanel),
    ("arrivals", "F7 Arrivals", "f7", ArrivalsPanel),
)


class SignInScreen(Screen[None]):
    BINDINGS = [Binding("ctrl+q", "app.quit", "Quit")]

    def compose(self) -> ComposeResult:
        data = self.clerk_app.data
        with Vertical():
            yield Static(Text.assemble((data.config.name, "bold"), f" ({data.store_id}) · clerk sign-in"))
            yield Static("")
            yield Static("担当者 clerk id")
            yield Input(id="clerk-id", placeholder="e.g. 1001", compact=True)
            yield Static("暗証番号 PIN")
            yield Input(id="pin", password=True, compact=True, placeholder="digits, not shown")
            yield Static("", id="signin-error", classes="field-error")
        yield Footer()

    @property
    def clerk_app(self) -> ClerkApp:
        return self.app  # type: ignore[return-value]

    def on_screen_resume(self) -> None:
        self.query_one("#pin", Input).value = ""
        self.query_one("#clerk-id", Input).focus()

    @on(Input.Submitted, "#clerk-id")
    def _next(self) -> None:
        self.query_one("#pin", Input).focus()

    @on(Input.Submitted, "#pin")
    def _submit(self) -> None:
        self.run_worker(self._sign_in, exclusive=True, group="sign-in")

    async def _sign_in(self) -> None:
        clerk_id = self.query_one("#clerk-id", Input).value
        pin_input = self.query_one("#pin", Input)
        pin, pin_input.value = pin_input.value, ""
        error = self.query_one("#signin-error", Static)
        try:
            clerk = await in_thread(self.clerk_app.data.sign_in, clerk_id, pin)
        except SignInRefused as exc:
            error.update(f"✗ {exc}")
            pin_input.focus()
            return
        error.update("")
        self.clerk_app.signed_in(clerk)


class MainScreen(Screen[None]):
    BINDINGS = [
        *(Binding(key, f"show_panel('{name}')", label, show=False) for name, label, key, _ in PANELS),
        Binding("ctrl+l", "sign_out", "Sign out"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._stale: set[str] = set()
        self._watching = False

    @property
    def clerk_app(self) -> ClerkApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        with TabbedContent(id="tabs"):
            for name, label, _key, panel in PANELS:
                with TabPane(label, id=f"tab-{name}"):
                    yield panel(id=name)
        yield Footer()

    def on_mount(self) -> None:
        clerk = self.clerk_app.clerk
        data = self.clerk_app.data
        role = "manager" if clerk and clerk.is_manager else "clerk"
        self.query_one("#status", Static).update(
            Text.assemble(("Tenpo ", "bold"), f"{data.store_id} {data.config.name} · ",
                          (f"{clerk.name if clerk else '?'}", "bold"), f" ({role})")  # fmt: skip
        )
        self.set_interval(WATCH_INTERVAL_S, self._watch)
        self.panel("home").reload()

    def panel(self, name: str) -> Panel:
        return self.query_one(f"#{name}", Panel)

    @property
    def active(self) -> str:
        return self.query_one(TabbedContent).active.removeprefix("tab-")

    def action_show_panel(self, name: str) -> None:
        # Drop focus first: a focused widget left in the old pane would pull its tab back to the front.
        self.set_focus(None)
        self.query_one(TabbedContent).active = f"tab-{name}"

    @on(TabbedContent.TabActivated)
    def _activated(self) -> None:
        panel = self.panel(self.active)
        if panel.LIVE or self.active in self._stale or not getattr(panel, "_loaded_once", False):
            panel._loaded_once = True  # type: ignore[attr-defined]
            self._stale.discard(self.active)
            panel.reload()
        self.call_after_refresh(panel.focus_first)

    def _watch(self) -> None:
        if not self._watching:  # a slow disk must not pile up checks
            self._watching = True
            self.run_worker(self._check, exclusive=True, group="watch")

    async def _check(self) -> None:
        try:
            changed = await in_thread(self.clerk_app.data.changed)
        finally:
            self._watching = False
        if not changed:
            return
        for name, _label, _key, panel_type in PANELS:
            if not panel_type.LIVE:
                continue
            if name == self.active:
                self.panel(name).reload()
            else:
                self._stale.add(name)

    def action_sign_out(self) -> None:
        self.clerk_app.sign_out()


class ClerkApp(App[None]):
    TITLE = "Tenpo clerk"
    CSS = CSS
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, data: ClerkData, receipts_dir: Path | None = None) -> None:
        super().__init__()
        self.data = data
        self.clerk: Clerk | None = None
        self.receipts_dir = receipts_dir or Path(data.config.database).parent / "receipts"

    def get_default_screen(self) -> Screen[Any]:
        return SignInScreen()

    def signed_in(self, clerk: Clerk) -> None:
        self.clerk = clerk
        self.push_screen(MainScreen())

    def sign_out(self) -> None:
        self.clerk = None
        while len(self.screen_stack) > 1:
            self.pop_screen()

    @property
    def main(self) -> MainScreen | None:
        return next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)

    def start_checkout(self, member_id: str) -> None:
        """From arrivals or a profile: a new sale with this member attached, on the checkout panel."""
        main = self.main
        if main is None:
            return
        while self.screen is not main:
            self.pop_screen()
        checkout = main.query_one("#checkout", CheckoutPanel)
        checkout.codes.clear()
        main.action_show_panel("checkout")
        checkout.attach(member_id)

    def on_unmount(self) -> None:
        self.data.close()
