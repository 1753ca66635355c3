"""Stock: this store live from its ledger, other stores as last reported; 取り置き (hold for pickup here)
and the list of holds asked for; stock adjustment with a manager's approval on the spot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from tenpo.edge.clerk.accounts import Clerk
from tenpo.edge.clerk.dialogs import with_manager
from tenpo.edge.clerk.values import Reservation, StockLine
from tenpo.edge.clerk.view import (
    Field,
    FormScreen,
    Panel,
    day_time,
    fit,
    if_answered,
    in_thread,
    right,
    run_async,
    selected_key,
    sync_table,
)
from tenpo.edge.reservations.screen import HeldScreen
from tenpo.shared.errors import UserError
from tenpo.shared.field_bounds import MAX_FIELD_CHARS  # issue 14: inputs bounded

if TYPE_CHECKING:
    from tenpo.edge.clerk.app import ClerkApp


def _int(text: str, field: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise UserError(f"{field}: a whole number") from None


def variant_cell(line: StockLine, width: int) -> Text | str:
    """A variant's colour and size first, in bold (what the clerk scans the rows for), then the style's name."""
    if not line.variant:
        return fit(line.name, width)
    text = Text(fit(f"{line.variant} {line.name}", width))
    text.stylize("bold", 0, min(len(line.variant), len(text)))
    return text


def on_hand_cell(on_hand: int) -> Text:
    """Below zero means sales were rung up that the ledger never received: worth a count."""
    if on_hand < 0:
        return Text(f"⚠ {on_hand:,}", "bold red", justify="right")
    return Text(f"{on_hand:,}", justify="right")


class StockRows(DataTable[Any]):
    """The results: a letter or digit typed here goes back to the search box, so the next search is a search."""

    def on_key(self, event: events.Key) -> None:
        if event.character and event.character.isprintable() and not event.character.isspace():
            search = self.screen.query_one("#stock-query", Input)
            search.focus()
            search.value = ""
            search.insert_text_at_cursor(event.character)
            event.stop()


class StockPanel(Panel):
    title = "Stock"
    BINDINGS = [
        Binding("f8", "reserve", "取り置き"),
        Binding("ctrl+o", "reservations", "Holds"),
        Binding("ctrl+t", "held", "Held here", show=False),  # issue 18: held at this store (palette lists it)
        Binding("f9", "adjust", "Adjust"),
        Binding("f10", "deliver", "配送"),  # issue 18 §7: お取り寄せ for home delivery
        Binding("down", "to_rows", "Rows", show=False),
    ]

    @property
    def clerk_app(self) -> ClerkApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Input(placeholder="JAN, SKU, style or product name · ↓ rows", id="stock-query", compact=True,
                    max_length=MAX_FIELD_CHARS)  # fmt: skip
        table = StockRows(id="stock-rows", cursor_type="row")
        for key, label in (("store", "store"), ("sku", "SKU"), ("name", "品名 name"), ("qty", "on hand"), ("when", "updated")):
            table.add_column(label, key=key)
        yield table
        yield Static("this store live; others as last reported to HQ", classes="muted", id="stock-note")

    def focus_first(self) -> None:
        self.query_one("#stock-query", Input).focus()

    @on(Input.Changed, "#stock-query")
    def _typed(self) -> None:
        self.reload()

    @on(Input.Submitted, "#stock-query")
    def _submitted(self) -> None:
        """Enter searches and stays in the box (↓ goes to the rows): the next thing typed is the next search."""
        self.reload()

    def action_to_rows(self) -> None:
        table = self.query_one("#stock-rows", DataTable)
        if table.row_count:
            table.focus()

    def fetch(self) -> list[StockLine]:
        return self.clerk_app.data.stock(self.query_one("#stock-query", Input).value)

    def show(self, lines: list[StockLine]) -> None:
        self.lines = {f"{line.store_id}/{line.sku}": line for line in lines}
        here = self.clerk_app.data.store_id
        rows = [
            (key, (Text(line.store_id, "bold") if line.store_id == here else line.store_id, line.sku,
                   variant_cell(line, 24), on_hand_cell(line.on_hand),
                   "live" if line.as_of is None else day_time(line.as_of)))  # fmt: skip
            for key, line in self.lines.items()
        ]
        sync_table(self.query_one("#stock-rows", DataTable), rows)
        negative = [line for line in lines if line.store_id == here and line.on_hand < 0]
        note = self.query_one("#stock-note", Static)
        if negative:
            note.update(Text(f"⚠ {negative[0].sku} shows {negative[0].on_hand} here: sold more than received; "
                             "count it and tell a manager", "bold red"))  # fmt: skip
        else:
            note.update(Text("this store live; others as last reported to HQ", "dim"))

    def _selected(self) -> StockLine | None:
        key = selected_key(self.query_one("#stock-rows", DataTable))
        return getattr(self, "lines", {}).get(key) if key else None

    def action_reserve(self) -> None:
        line = self._selected()
        if line is None:  # this store's row: held here at once; another store's: asked of HQ (issue 18)
            self.app.notify("select a store's row to hold its stock for pickup here", severity="warning")
            return
        data, clerk = self.clerk_app.data, self.clerk_app.clerk
        assert clerk is not None

        def submit(values: dict[str, str]) -> str:
            qty = _int(values["qty"], "qty")
            member_id = data.resolve_member(values["member"]).member_id if values["member"].strip() else None
            return data.reserve(clerk, sku=line.sku, qty=qty, from_store=line.store_id, member_id=member_id,
                                customer=values["customer"].strip() or None,
                                pickup_store=values["pickup"].strip() or data.store_id)  # fmt: skip

        # Collected here unless the customer names another store (the holding store, or one near them): a
        # store other than the holding one gets it by transfer (docs/transfers.md).
        fields = (Field("qty", "数量 qty", value="1"), Field("member", "会員 member", "card / phone / name"),
                  Field("customer", "お客様 customer", "name or phone if not a member"),
                  Field("pickup", "受取店 pickup store", "store id", value=data.store_id, aliases=("pickup store",)))  # fmt: skip
        note = f"{line.name} ({line.sku}) at {line.store_id}: {line.on_hand} on hand"
        sent = if_answered(lambda rid: self.app.notify(f"reservation {rid} sent to HQ (Ctrl+O lists)"))
        self.app.push_screen(FormScreen("取り置き · hold for pickup", fields, submit, note), sent)

    def action_deliver(self) -> None:
        """お取り寄せ: the size another store has, shipped from there to the customer's home, paid on delivery."""
        line = self._selected()
        data, clerk = self.clerk_app.data, self.clerk_app.clerk
        if line is None or line.store_id == data.store_id:
            self.app.notify("select another store's row to have it delivered from there", severity="warning")
            return
        assert clerk is not None

        def submit(values: dict[str, str]) -> str:
            member_id = data.resolve_member(values["member"]).member_id if values["member"].strip() else None
            return data.deliver(clerk, sku=line.sku, qty=_int(values["qty"], "qty"), from_store=line.store_id,
                                member_id=member_id, customer=values["customer"], address=values["address"],
                                phone=values["phone"].strip() or None)  # fmt: skip

        fields = (Field("qty", "数量 qty", value="1"), Field("member", "会員 member", "card / phone / name (optional)"),
                  Field("customer", "お名前 name", "who receives it"), Field("address", "住所 address", "〒 and address"),
                  Field("phone", "電話 phone", "for the carrier"))  # fmt: skip
        note = f"{line.name} ({line.sku}) from {line.store_id}: paid on delivery (代引き)"
        self.app.push_screen(FormScreen("お取り寄せ · deliver to the customer's home", fields, submit, note),
                             if_answered(lambda rid: self.app.notify(f"delivery {rid} sent to HQ (Ctrl+O lists)")))  # fmt: skip

    def action_reservations(self) -> None:
        self.app.push_screen(ReservationsScreen())

    def action_held(self) -> None:
        self.app.push_screen(HeldScreen())

    def action_adjust(self) -> None:
        line = self._selected()
        if line is None or line.store_id != self.clerk_app.data.store_id:
            self.app.notify("select this store's product row first", severity="warning")
            return
        data, clerk = self.clerk_app.data, self.clerk_app.clerk
        assert clerk is not None

        def approved(approver: Clerk | None) -> None:
            def submit(values: dict[str, str]) -> int:
                return data.adjust_stock(clerk, line.sku, _int(values["qty"], "qty"), values["reason"], approver)

            fields = (Field("qty", "数量 ±qty", "-2 or 5"), Field("reason", "理由 reason", "damaged, count ..."))
            self.app.push_screen(FormScreen(f"在庫調整 · adjust {line.sku} here", fields, submit),
                                 if_answered(lambda seq: self.reload()))  # fmt: skip

        with_manager(self.clerk_app, f"stock adjustment of {line.sku}", approved)


class ReservationsScreen(Screen[None]):
    """取り置き this clerk asked for, newest first: what was sent and HQ's answer so far."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+a", "toggle_all", "Mine/all"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.everyone = False

    @property
    def clerk_app(self) -> ClerkApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        yield Static("", id="res-title", classes="dialog-title")
        table: DataTable[Any] = DataTable(id="res-table", cursor_type="row")
        for key, label in (("id", "取り置き"), ("item", "品名"), ("qty", "qty"), ("from", "from"), ("for", "for"),
                           ("state", "state"), ("at", "sent")):  # fmt: skip
            table.add_column(label, key=key)
        yield table
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.clerk_app.paint_status()
        run_async(self, self._load, exclusive=True, group="reservations")

    def action_toggle_all(self) -> None:
        self.everyone = not self.everyone
        run_async(self, self._load, exclusive=True, group="reservations")

    async def _load(self) -> None:
        clerk = self.clerk_app.clerk
        assert clerk is not None
        found: list[Reservation] = await in_thread(self.clerk_app.data.reservations,
                                                   None if self.everyone else clerk.clerk_id)  # fmt: skip
        whose = "this store's" if self.everyone else f"{clerk.name}'s"
        self.query_one("#res-title", Static).update(f"取り置き · {whose} holds ({len(found)}) · Esc back")
        rows = [(r.reservation_id, (r.reservation_id, fit(r.name, 14), right(str(r.qty)), r.from_store,
                                    fit(r.customer, 10), reservation_state(r.status), day_time(r.created_at)))
                for r in found]  # fmt: skip
        sync_table(self.query_one("#res-table", DataTable), rows)
        self.query_one("#res-table", DataTable).focus()


def reservation_state(status: str) -> Text:
    """'requested' until HQ answers: said as 'sent, waiting for HQ' so nobody thinks it is confirmed."""
    words = {"requested": ("sent · waiting for HQ", "yellow"), "confirmed": ("confirmed by HQ", "green"),
             "held": ("held at store", "green"), "rejected": ("refused by HQ", "bold red"),
             "cancelled": ("cancelled", "dim"), "picked_up": ("picked up", "dim"),
             "ready": ("ready for pickup", "bold green"), "expired": ("expired", "dim"),
             "in_transit": ("on its way · transfer", "cyan")}  # fmt: skip
    text, style = words.get(status, (status, ""))
    return Text(text, style)
