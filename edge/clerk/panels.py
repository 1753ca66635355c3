"""Home and Arrivals panels (Stock, Dock and Checkout have modules of their own)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from tenpo.edge.clerk.data import format_age
from tenpo.edge.clerk.members import ProfileScreen
from tenpo.edge.clerk.values import ArrivalLine, HomeStatus
from tenpo.edge.clerk.view import (
    Panel,
    clock_time,
    day_time,
    fit,
    right,
    selected_key,
    sync_table,
    yen,
)  # fmt: skip
from tenpo.shared.terminal import safe_text

if TYPE_CHECKING:
    from tenpo.edge.clerk.app import ClerkApp


class AppPanel(Panel):
    @property
    def clerk_app(self) -> ClerkApp:
        return self.app  # type: ignore[return-value]


# ---------------------------------------------------------------------------- home


class HomePanel(AppPanel):
    LIVE = True
    title = "Home"

    def compose(self) -> ComposeResult:
        yield Static("loading…", id="home-body")

    def fetch(self) -> HomeStatus:
        return self.clerk_app.data.home()

    def show(self, s: HomeStatus) -> None:
        clerk = self.clerk_app.clerk
        link = Text("● online", "bold green") if s.online else Text("● offline", "bold red")
        since = f" since {clock_time(s.link_changed_at)}" if s.link_changed_at else ""
        oldest = f", oldest {format_age(s.oldest_age_s)} old" if s.oldest_age_s is not None else ""
        body = Text.assemble(
            (f"{s.store_name}", "bold"), f"  ({s.store_id})\n",
            f"clerk    {clerk.name} ({clerk.clerk_id}, {clerk.role.value})\n" if clerk else "",
            "link     ", link, f"{since} · agent {'running' if s.agent_running else 'stopped'}\n",
            f"outbox   {s.backlog} unsent event(s){oldest}\n",
            f"sync     last {clock_time(s.last_sync_at) if s.last_sync_at else 'never'}: HQ has applied up to event "
            f"{s.acked_seq} of {s.last_seq}; change feed at {s.feed_cursor}\n",
            "\n", ("alerts\n", "bold"),
        )  # fmt: skip
        for alert in s.alerts or ("none",):
            body.append(f"  • {alert}\n", "yellow" if s.alerts else "dim")
        body.append("\nF3 members · F4 checkout · F5 stock · F6 dock · F7 arrivals · Ctrl+L sign out · "
                    "Ctrl+P every action · F12 screenshot · Ctrl+Q quit", "dim")
        self.query_one("#home-body", Static).update(body)


# ---------------------------------------------------------------------------- arrivals


class ArrivalsPanel(AppPanel):
    LIVE = True
    title = "Arrivals"
    BINDINGS = [
        Binding("enter", "profile", "Profile"),
        Binding("f8", "checkout", "Checkout for member"),
    ]

    def compose(self) -> ComposeResult:
        table: DataTable[Any] = DataTable(id="arrivals-table", cursor_type="row")
        for key, label in (("at", "来店"), ("name", "お名前 (読み)"), ("tier", "tier"), ("points", "points"),
                           ("last", "last purchase"), ("here", "")):  # fmt: skip
            table.add_column(label, key=key)
        yield table
        yield Static("members detected by the member app's beacon, newest first", classes="muted", id="arrivals-note")

    def focus_first(self) -> None:
        self.query_one("#arrivals-table", DataTable).focus()

    def fetch(self) -> list[ArrivalLine]:
        return self.clerk_app.data.arrivals()

    def show_error(self, message: str) -> None:
        self.query_one("#arrivals-note", Static).update(Text(safe_text(f"not available: {message}")))

    def show(self, arrivals: list[ArrivalLine]) -> None:
        rows = []
        seen: set[str] = set()
        for a in arrivals:
            if a.member_id in seen:  # one row per member: their latest visit
                continue
            seen.add(a.member_id)
            name = f"{a.name} 様 ({a.kana})" if a.kana else f"{a.name} 様"
            last = "-" if a.last_purchase_at is None else f"{day_time(a.last_purchase_at)} {yen(a.last_purchase_total)}"
            rows.append((a.member_id, (clock_time(a.arrived_at), fit(name, 28), a.tier, right(f"{a.points:,}"), last,
                                       Text("●", "green") if a.present else Text("·", "dim"))))  # fmt: skip
        sync_table(self.query_one("#arrivals-table", DataTable), rows)

    def _member(self) -> str | None:
        return selected_key(self.query_one("#arrivals-table", DataTable))

    def action_profile(self) -> None:
        member_id = self._member()
        if member_id:
            self.app.push_screen(ProfileScreen(member_id))

    @on(DataTable.RowSelected, "#arrivals-table")
    def _selected(self) -> None:
        self.action_profile()

    def action_checkout(self) -> None:
        member_id = self._member()
        if member_id:
            self.clerk_app.start_checkout(member_id)


