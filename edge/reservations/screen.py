"""The clerk terminal's list of reservations held at this store (Stock panel, Ctrl+T, or the palette): what channels and other
stores' clerks reserved here, to pick from the shelf (r: ready) or to refuse with a reason (x: reject); one
collected at another store is sent there (s: ship, a transfer), one on its way here shows until its delivery
passes the dock. Handing one over is a sale: `tenpo edge reservation pickup ID` (docs/channel.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tenpo.edge.clerk.view import (
    Field,
    FormScreen,
    day_time,
    fit,
    if_answered,
    in_thread,
    right,
    run_async,
    selected_key,
    sync_table,
)
from tenpo.edge.reservations import store

if TYPE_CHECKING:
    from tenpo.edge.clerk.app import ClerkApp

STATES = {"confirmed": ("to pick", "yellow"), "ready": ("ready at the counter", "bold green"),
          "requested": ("deciding", "dim"), "in_transit": ("on its way here", "cyan")}  # fmt: skip


class HeldScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "ready", "Ready"),
        Binding("x", "reject", "Reject"),
        Binding("s", "ship", "Ship"),
    ]

    @property
    def clerk_app(self) -> ClerkApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        yield Static("", id="held-title", classes="dialog-title")
        table: DataTable[Any] = DataTable(id="held-table", cursor_type="row")
        for key, label in (("id", "予約"), ("item", "品名"), ("qty", "qty"), ("by", "by"), ("for", "for"),
                           ("state", "state"), ("pickup", "受取"), ("until", "until")):  # fmt: skip
            table.add_column(label, key=key)
        yield table
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.clerk_app.paint_status()
        self.reload()

    def reload(self) -> None:
        run_async(self, self._load, exclusive=True, group="held")

    def _held(self) -> list[store.Reservation]:
        data = self.clerk_app.data
        with data._lock:  # the terminal's one connection, shared with its other panels
            return store.listing(data.db, active_only=True, here=data.store_id)

    async def _load(self) -> None:
        found: list[store.Reservation] = await in_thread(self._held)
        here = self.clerk_app.data.store_id
        self.query_one("#held-title", Static).update(
            f"予約 · held here ({len(found)}) · r ready · x reject · s ship · Esc back")
        rows = [(r.reservation_id, (r.reservation_id, fit(r.sku, 14), right(str(r.qty)), fit(r.channel, 10),
                                    fit(r.customer or r.member_id or "-", 10), Text(*STATES.get(r.state, (r.state, ""))),
                                    fit(r.transit(here) or "here", 16),
                                    day_time(r.expires_at) if r.expires_at else "-"))
                for r in found]  # fmt: skip
        table = self.query_one("#held-table", DataTable)
        sync_table(table, rows)
        table.focus()

    def _move(self, fn: object, *args: object) -> store.Reservation:
        data = self.clerk_app.data
        with data._lock:
            return fn(data.db, *args)  # type: ignore[operator,no-any-return]

    def action_ready(self) -> None:
        rid = selected_key(self.query_one("#held-table", DataTable))
        clerk = self.clerk_app.clerk
        if rid is None or clerk is None:
            return

        async def ready() -> None:
            try:
                await in_thread(self._move, store.mark_ready, rid, clerk.clerk_id)
            except Exception as exc:  # a UserError says why (already ready, released by HQ)
                self.app.notify(str(exc), severity="warning")
            else:
                self.app.notify(f"{rid} ready at the counter")
            self.reload()

        run_async(self, ready, exclusive=True, group="held-move")

    def action_ship(self) -> None:
        """Packed for the store the customer collects at: the transfer takes the units out (docs/transfers.md)."""
        rid = selected_key(self.query_one("#held-table", DataTable))
        clerk = self.clerk_app.clerk
        if rid is None or clerk is None:
            return
        here = self.clerk_app.data.store_id

        async def ship() -> None:
            try:
                _done, sent = await in_thread(self._move, store.ship, here, rid, clerk.clerk_id)
            except Exception as exc:  # a UserError says why (collected here, not on hand, released by HQ)
                self.app.notify(str(exc), severity="warning")
            else:
                self.app.notify(f"{rid} sent to {sent.to_store} as {sent.transfer_id}")
            self.reload()

        run_async(self, ship, exclusive=True, group="held-move")

    def action_reject(self) -> None:
        rid = selected_key(self.query_one("#held-table", DataTable))
        clerk = self.clerk_app.clerk
        if rid is None or clerk is None:
            return

        def submit(values: dict[str, str]) -> str:
            return self._move(store.reject, rid, values["reason"], clerk.clerk_id).state

        fields = (Field("reason", "理由 reason", "damaged, not found ..."),)
        self.app.push_screen(FormScreen(f"reject {rid}", fields, submit), if_answered(lambda state: self.reload()))
