"""`tenpo clerk`: the clerk terminal, a Textual app on the store's SQLite file.

It needs no agent: it reads and writes the replica directly (WAL lets it share the file with the
agent). Database calls run in worker threads; the UI thread only paints. Live panels (home,
arrivals, dock) re-query when ``PRAGMA data_version`` on a watch connection moves, checked every
half second, so a delivery read by the agent or a member walking in appears without polling queries.

The smallest supported terminal is 60×20 (docs/clerk.md): the status line (link, backlog), the amount
to collect and the footer stay on screen at that size. Every action is also in the command palette
(Ctrl+P); F12 saves a screenshot (SVG, 0600) under the store's data folder for a support call.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from tenpo.edge.clerk.accounts import Clerk, SignInRefused
from tenpo.edge.clerk.data import ClerkData
from tenpo.edge.clerk.dialogs import ConfirmScreen
from tenpo.edge.clerk.dock import DockPanel
from tenpo.edge.clerk.members import MembersPanel
from tenpo.edge.clerk.panels import ArrivalsPanel, HomePanel
from tenpo.edge.clerk.stock import StockPanel
from tenpo.edge.clerk.till import CheckoutPanel
from tenpo.edge.clerk.values import LinkStatus
from tenpo.edge.clerk.view import Panel, if_answered, in_thread, run_async
from tenpo.shared.field_bounds import MAX_FIELD_CHARS, MAX_WORD_CHARS  # issue 14: inputs bounded
from tenpo.shared.terminal import safe_text

WATCH_INTERVAL_S = 0.5
LINK_REFRESH_TICKS = 10  # the agent can die without writing: re-check the link every 5 s anyway

CSS = """
#status { height: 1; padding: 0 1; background: $boost; }
.muted { color: $text-muted; height: auto; }
.section { height: 1; color: $text-muted; }
.field-error { color: $error; height: auto; }
#tabs { height: 1fr; }
#tabs > ContentSwitcher { height: 1fr; }
#tabs TabPane { height: 1fr; padding: 0; }
Panel { height: 1fr; padding: 0 1; }
Tabs { height: 1; }
Tab { padding: 0 0 0 1; }
Underline { display: none; }
Panel > DataTable { height: 1fr; }
Panel > Input { margin: 0; }
#home-body { height: auto; }
#dock-list { height: 7; }
#dock-gtins { height: 1fr; }
#dock-progress { height: 1; }
#till-totals { height: 1; }
#till-tax { height: auto; max-height: 2; }
#till-error { height: auto; max-height: 2; }
#profile-head { height: auto; padding: 0 1; }
#profile-tables { height: 1fr; }
#profile-tables > Vertical { width: 1fr; padding: 0 1; }
SignInScreen { align: center middle; }
SignInScreen > Vertical { width: 56; max-width: 100%; height: auto; border: thick $accent; padding: 1 2; }
SignInScreen Input { margin: 0 0 1 0; }
FormScreen, ReceiptScreen, ConfirmScreen, RefundScreen { align: center middle; }
.dialog { width: 70; max-width: 100%; height: auto; max-height: 100%; border: thick $accent; padding: 0 1;
          background: $surface; overflow-y: auto; }
#refund-dialog { height: 100%; max-height: 22; }
#refund-lines { height: 1fr; }
#refund-reason { height: auto; max-height: 5; border: none; padding: 0; }
Footer { height: 1; }
.dialog-title { text-style: bold; height: auto; }
.form-row { height: 1; }
.form-label { width: 18; }
.form-row Input { width: 1fr; }
.receipt { width: 50; }
#res-table { height: 1fr; }
"""

PANELS: tuple[tuple[str, str, str, type[Panel]], ...] = (
    ("home", "F2 Home", "f2", HomePanel),
    ("members", "F3 Members", "f3", MembersPanel),
    ("checkout", "F4 Checkout", "f4", CheckoutPanel),
    ("stock", "F5 Stock", "f5", StockPanel),
    ("dock", "F6 Dock", "f6", DockPanel),
    ("arrivals", "F7 Arrivals", "f7", ArrivalsPanel),
)

# (panel, palette title, panel action, help): what the palette offers besides switching panels.
PALETTE_ACTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("members", "New member (F8 in Members)", "register", "Register a member; works offline"),
    ("checkout", "Attach a member (F8 in Checkout)", "member", "By card, phone (or its last 4 digits), name"),
    ("checkout", "Redeem points (F9 in Checkout)", "points", "Points to use on this sale"),
    ("checkout", "Pay (F10 in Checkout)", "pay", "Take the payment and print the receipt"),
    ("checkout", "Quantity of a line (Ctrl+T)", "quantity", "Or type 12* before a scan"),
    ("checkout", "Line discount / price (Ctrl+G, manager)", "discount", "A manager approves on the spot"),
    ("checkout", "New sale (Ctrl+N)", "new_sale", "Empty the basket"),
    ("checkout", "Refund (Ctrl+R, manager)", "refund", "Pick lines from the receipt, reason, confirm"),
    ("stock", "取り置き reserve (F8 in Stock)", "reserve", "Hold another store's stock for pickup here"),
    ("stock", "取り置き list (Ctrl+O in Stock)", "reservations", "What was sent to HQ and its answer"),
    ("stock", "Held here (Ctrl+T in Stock)", "held", "Reservations held at this store: r ready, x reject"),  # issue 18
    ("stock", "Adjust stock (F9 in Stock, manager)", "adjust", "A manager approves on the spot"),
    ("dock", "Accept delivery (F8 in Dock)", "accept", "A differing delivery needs a manager"),
    ("dock", "Hold delivery (F9 in Dock)", "hold", "For a manager to look at"),
    ("arrivals", "Profile of the selected arrival (Enter in Arrivals)", "profile", "Opening it is audited"),
    ("arrivals", "Checkout for the selected arrival (F8 in Arrivals)", "checkout", "A new sale with the member"),
)


class SignInScreen(Screen[None]):
    BINDINGS = [Binding("ctrl+q", "app.request_quit", "Quit")]

    def compose(self) -> ComposeResult:
        data = self.clerk_app.data
        with Vertical():
            yield Static(Text.assemble((data.config.name, "bold"), f" ({data.store_id}) · clerk sign-in"))
            yield Static("")
            yield Static("担当者 clerk id")
            yield Input(id="clerk-id", placeholder="e.g. 1001", compact=True, max_length=MAX_FIELD_CHARS)
            yield Static("暗証番号 PIN")
            yield Input(id="pin", password=True, compact=True, placeholder="digits, not shown", max_length=MAX_WORD_CHARS)
            yield Static("", id="signin-error", classes="field-error")
        yield Footer(compact=True, show_command_palette=False)

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
        run_async(self, self._sign_in, exclusive=True, group="sign-in")

    async def _sign_in(self) -> None:
        clerk_id = self.query_one("#clerk-id", Input).value
        pin_input = self.query_one("#pin", Input)
        pin, pin_input.value = pin_input.value, ""
        error = self.query_one("#signin-error", Static)
        try:
            clerk = await in_thread(self.clerk_app.data.sign_in, clerk_id, pin)
        except SignInRefused as exc:
            error.update(Text(safe_text(f"✗ {exc}")))
            pin_input.focus()
            return
        error.update("")
        self.clerk_app.signed_in(clerk)


class MainScreen(Screen[None]):
    BINDINGS = [
        *(Binding(key, f"show_panel('{name}')", label, show=False) for name, label, key, _ in PANELS),
        Binding("ctrl+l", "sign_out", "Sign out", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._stale: set[str] = set()
        self._watching = False
        self._ticks = 0

    @property
    def clerk_app(self) -> ClerkApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        with TabbedContent(id="tabs"):
            for name, label, _key, panel in PANELS:
                with TabPane(label, id=f"tab-{name}"):
                    yield panel(id=name)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.show_status()
        self.set_interval(WATCH_INTERVAL_S, self._watch)
        self.panel("home").reload()
        run_async(self, self._refresh_link, group="link")

    def show_status(self) -> None:
        self.clerk_app.paint_status()

    async def _refresh_link(self) -> None:
        self.clerk_app.link = await in_thread(self.clerk_app.data.link)
        self.show_status()

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
            run_async(self, self._check, exclusive=True, group="watch")

    async def _check(self) -> None:
        try:
            changed = await in_thread(self.clerk_app.data.changed)
        finally:
            self._watching = False
        self._ticks += 1
        if changed or self._ticks % LINK_REFRESH_TICKS == 0:
            await self._refresh_link()
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
    BINDINGS = [
        Binding("ctrl+q", "request_quit", "Quit", priority=True),
        Binding("ctrl+p", "command_palette", "More", priority=True),
        Binding("f12", "support_screenshot", "Screenshot", show=False),
    ]

    def __init__(self, data: ClerkData, receipts_dir: Path | None = None) -> None:
        super().__init__()
        self.data = data
        self.clerk: Clerk | None = None
        self.link: LinkStatus | None = None
        self.receipts_dir = receipts_dir or Path(data.config.database).parent / "receipts"
        self.screenshots_dir = Path(data.config.database).parent / "screenshots"

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Messages quote customer text and typed input: plain text by default, escapes shown."""
        super().notify(safe_text(message, multiline=True), title=safe_text(title), severity=severity, timeout=timeout,
                       markup=markup)

    # ------------------------------------------------------------------ quit, screenshot, palette

    def open_basket(self) -> bool:
        main = self.main
        return main is not None and main.query_one("#checkout", CheckoutPanel).open_basket

    def action_request_quit(self) -> None:
        """Ctrl+Q: at once with nothing open; with a basket open, ask first (the basket is not kept)."""
        if not self.open_basket():
            self.exit()
            return
        self.push_screen(ConfirmScreen("終了 · quit the till?", "A basket is open: quitting drops it (nothing is sold).",
                                       "Enter quit"), if_answered(lambda yes: self.exit()))  # fmt: skip

    def action_support_screenshot(self) -> None:
        """F12: the screen as SVG under the store's data folder, readable by the store account only."""
        self.screenshots_dir.mkdir(parents=True, exist_ok=True)
        name = f"clerk-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 1000:03d}.svg"
        path = Path(self.save_screenshot(name, str(self.screenshots_dir)))
        os.chmod(path, 0o600)  # it may show a member's personal data
        self.notify(f"screenshot saved: {path}")

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette (Ctrl+P): every clerk action, by name, wherever the clerk is."""
        main = self.main
        if main is None or self.clerk is None:
            yield SystemCommand("Quit", "Close the clerk terminal", self.action_request_quit)
            return
        for name, label, _key, _panel in PANELS:
            yield SystemCommand(f"Go to {label}", f"Show the {name} panel", lambda n=name: self._go(n))
        for panel_name, title, action, help_text in PALETTE_ACTIONS:
            yield SystemCommand(title, help_text, lambda p=panel_name, a=action: self._run(p, a))
        yield SystemCommand("Screenshot for support (F12)", "Save this screen as SVG", self.action_support_screenshot)
        yield SystemCommand("Sign out (Ctrl+L)", "Back to the sign-in screen", self.sign_out)
        yield SystemCommand("Quit (Ctrl+Q)", "Close the till (asks first with a basket open)", self.action_request_quit)

    def _go(self, name: str) -> None:
        main = self.main
        if main is not None:
            while self.screen is not main:
                self.pop_screen()
            main.action_show_panel(name)

    def _run(self, panel_name: str, action: str) -> None:
        main = self.main
        if main is None:
            return
        self._go(panel_name)
        self.call_after_refresh(getattr(main.panel(panel_name), f"action_{action}"))

    def paint_status(self) -> None:
        """One line every panel shows: online/offline, the unsent backlog, who is signed in, the store."""
        clerk, data, link = self.clerk, self.data, self.link
        role = "manager" if clerk and clerk.is_manager else "clerk"
        if link is None:
            state = Text("…", "dim")
        elif link.online:
            state = Text("● online", "bold green")
        else:
            state = Text("● offline" if link.agent_running else "● offline (agent stopped)", "bold red")
        backlog = f" · {link.backlog} unsent" if link is not None else ""
        text = Text.assemble(state, backlog, " · ", (f"{clerk.name if clerk else '?'}", "bold"), f" ({role}) · ",
                             f"{data.store_id} {data.config.name}", no_wrap=True, overflow="ellipsis")  # fmt: skip
        for screen in self.screen_stack:  # the main screen and any full screen over it (profile, holds)
            for line in screen.query("#status"):
                if isinstance(line, Static):
                    line.update(text)

    def get_default_screen(self) -> Screen[Any]:
        return SignInScreen()

    def signed_in(self, clerk: Clerk) -> None:
        self.clerk = clerk
        self.link = None
        self.push_screen(MainScreen())

    def sign_out(self) -> None:
        self.clerk = None
        while len(self.screen_stack) > 1:
            self.pop_screen()

    @property
    def main(self) -> MainScreen | None:
        return next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)

    def start_checkout(self, member_id: str) -> None:
        """From arrivals or a profile: the checkout panel with this member attached (an open basket is kept)."""
        main = self.main
        if main is None:
            return
        while self.screen is not main:
            self.pop_screen()
        checkout = main.query_one("#checkout", CheckoutPanel)
        main.action_show_panel("checkout")
        if not checkout.codes:
            checkout.attach(member_id)
            return
        # Items are already scanned (often the arriving member's own): never drop them unasked.
        self.push_screen(ConfirmScreen("会員 · attach to the open basket?",
                                       f"{len(checkout.codes)} scan(s) in the basket: attach this member to it (Enter), "
                                       "or Esc to leave the basket as it is.", "Enter attach"),
                         if_answered(lambda yes: checkout.attach(member_id)))  # fmt: skip

    def on_unmount(self) -> None:
        self.data.close()
