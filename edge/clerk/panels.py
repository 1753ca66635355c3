"""Home, Stock, Arrivals and Dock inspection panels."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, ProgressBar, Static

from tenpo.edge.clerk.data import ArrivalLine, DockView, HomeStatus, StockLine, format_age
from tenpo.edge.clerk.members import ProfileScreen
from tenpo.edge.clerk.view import (
    Field,
    FormScreen,
    Panel,
    clock_time,
    day_time,
    fit,
    in_thread,
    right,
    selected_key,
    sync_table,
    yen,
)  # fmt: skip
from tenpo.shared.errors import UserError

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
        body.append("\nF3 members · F4 checkout · F5 stock · F6 dock · F7 arrivals · Ctrl+L sign out", "dim")
        self.query_one("#home-body", Static).update(body)


# ---------------------------------------------------------------------------- stock


class StockPanel(AppPanel):
    title = "Stock"
    BINDINGS = [
        Binding("f8", "reserve", "取り置き reserve"),
        Binding("f9", "adjust", "Adjust (manager)"),
        Binding("down", "to_rows", "Rows", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Input(placeholder="JAN, SKU or product name", id="stock-query", compact=True)
        table: DataTable = DataTable(id="stock-rows", cursor_type="row")
        for key, label in (("store", "store"), ("sku", "SKU"), ("name", "品名 name"), ("qty", "on hand"), ("when", "updated")):
            table.add_column(label, key=key)
        yield table
        yield Static("this store is live from its ledger; other stores as of their last report to HQ", classes="muted")

    def focus_first(self) -> None:
        self.query_one("#stock-query", Input).focus()

    @on(Input.Changed, "#stock-query")
    def _typed(self) -> None:
        self.reload()

    @on(Input.Submitted, "#stock-query")
    def _submitted(self) -> None:
        self.action_to_rows()

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
                   fit(line.name, 24), right(f"{line.on_hand:,}"),
                   "live" if line.as_of is None else day_time(line.as_of)))  # fmt: skip
            for key, line in self.lines.items()
        ]
        sync_table(self.query_one("#stock-rows", DataTable), rows)

    def _selected(self) -> StockLine | None:
        key = selected_key(self.query_one("#stock-rows", DataTable))
        return getattr(self, "lines", {}).get(key) if key else None

    def action_reserve(self) -> None:
        line = self._selected()
        if line is None or line.store_id == self.clerk_app.data.store_id:
            self.app.notify("select another store's row to hold stock there for pickup here", severity="warning")
            return
        data, clerk = self.clerk_app.data, self.clerk_app.clerk
        assert clerk is not None

        def submit(values: dict[str, str]) -> str:
            qty = _int(values["qty"], "qty")
            member_id = data.resolve_member(values["member"]).member_id if values["member"].strip() else None
            return data.reserve(clerk, sku=line.sku, qty=qty, from_store=line.store_id, member_id=member_id,
                                customer=values["customer"].strip() or None)  # fmt: skip

        fields = (Field("qty", "数量 qty", value="1"), Field("member", "会員 member", "card / phone / name"),
                  Field("customer", "お客様 customer", "name or phone if not a member"))  # fmt: skip
        note = f"{line.name} ({line.sku}) at {line.store_id}: {line.on_hand} on hand"
        self.app.push_screen(FormScreen("取り置き · hold for pickup here", fields, submit, note),
                             lambda rid: rid and self.app.notify(f"reservation {rid} sent to HQ"))  # fmt: skip

    def action_adjust(self) -> None:
        clerk = self.clerk_app.clerk
        assert clerk is not None
        if not clerk.is_manager:
            self.app.notify("stock adjustment: needs a manager", severity="error")
            return
        line = self._selected()
        if line is None:
            self.app.notify("select a product row first", severity="warning")
            return
        data = self.clerk_app.data

        def submit(values: dict[str, str]) -> int:
            return data.adjust_stock(clerk, line.sku, _int(values["qty"], "qty"), values["reason"])

        fields = (Field("qty", "数量 ±qty", "-2 or 5"), Field("reason", "理由 reason", "damaged, count ..."))
        self.app.push_screen(FormScreen(f"在庫調整 · adjust {line.sku} here", fields, submit),
                             lambda seq: seq and self.reload())  # fmt: skip


def _int(text: str, field: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise UserError(f"{field}: a whole number") from None


# ---------------------------------------------------------------------------- arrivals


class ArrivalsPanel(AppPanel):
    LIVE = True
    title = "Arrivals"
    BINDINGS = [
        Binding("enter", "profile", "Profile"),
        Binding("f8", "checkout", "Checkout for member"),
    ]

    def compose(self) -> ComposeResult:
        table: DataTable = DataTable(id="arrivals-table", cursor_type="row")
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
        self.query_one("#arrivals-note", Static).update(f"not available: {message}")

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


# ---------------------------------------------------------------------------- dock inspection


class DockPanel(AppPanel):
    LIVE = True
    title = "Dock"
    BINDINGS = [
        Binding("f8", "accept", "Accept"),
        Binding("f9", "hold", "Hold"),
    ]

    def compose(self) -> ComposeResult:
        yield Static("", id="dock-live")
        yield ProgressBar(id="dock-progress", show_eta=False)
        yield Static("", id="dock-summary")
        inspections: DataTable = DataTable(id="dock-list", cursor_type="row")
        for key, label in (("id", "inspection"), ("shipment", "shipment"), ("status", "status"), ("units", "recv/exp"),
                           ("diff", "missing/unexp/wrong")):  # fmt: skip
            inspections.add_column(label, key=key)
        yield inspections
        gtins: DataTable = DataTable(id="dock-gtins", cursor_type="none")
        for key, label in (("gtin", "GTIN"), ("name", "品名"), ("exp", "expected"), ("recv", "received"), ("diff", "±")):
            gtins.add_column(label, key=key)
        yield gtins

    def focus_first(self) -> None:
        self.query_one("#dock-list", DataTable).focus()

    def fetch(self) -> DockView:
        return self.clerk_app.data.dock()

    def show_error(self, message: str) -> None:
        self.query_one("#dock-live", Static).update(f"not available: {message}")

    def show(self, view: DockView) -> None:
        self.view_ = view
        session = view.session
        if session.get("open"):
            live = Text.assemble(("● reading a delivery", "bold yellow"), f": {session.get('tags', 0)} tags, "
                                 f"{session.get('reads', 0)} reads")  # fmt: skip
        elif view.service_state:
            live = Text(f"dock reader {view.service_state}; door quiet", "dim")
        else:
            live = Text("no dock reader reporting (agent stopped or no reader configured)", "dim")
        if view.next_asn:
            live.append(f" · next ASN {view.next_asn[0]} ({view.next_asn[1]} units)", "dim")
        self.query_one("#dock-live", Static).update(live)
        rows = []
        for r in view.inspections:
            v = r.verdict
            status = Text(r.status, {"pending": "bold yellow", "held": "bold red", "accepted": "green"}.get(r.status, ""))
            rows.append((r.inspection_id, (r.inspection_id, r.shipment_id or "(no ASN)", status,
                                           right(f"{v.received_units}/{v.expected_units}"),
                                           f"{len(v.missing)}/{len(v.unexpected)}/{len(v.wrong_store)}")))  # fmt: skip
        sync_table(self.query_one("#dock-list", DataTable), rows)
        self._detail()

    @on(DataTable.RowHighlighted, "#dock-list")
    def _highlighted(self) -> None:
        self._detail()

    def _record(self) -> Any | None:
        key = selected_key(self.query_one("#dock-list", DataTable))
        view = getattr(self, "view_", None)
        if key is None or view is None:
            return None
        return next((r for r in view.inspections if r.inspection_id == key), None)

    def _detail(self) -> None:
        view: DockView | None = getattr(self, "view_", None)
        record = self._record()
        bar = self.query_one("#dock-progress", ProgressBar)
        if view is not None and view.session.get("open") and view.next_asn:
            bar.update(total=max(view.next_asn[1], 1), progress=min(int(view.session.get("tags", 0)), view.next_asn[1]))
        elif record is not None:
            v = record.verdict
            bar.update(total=max(v.expected_units, 1), progress=min(v.received_units, max(v.expected_units, 1)))
        else:
            bar.update(total=1, progress=0)
        summary = self.query_one("#dock-summary", Static)
        gtins = self.query_one("#dock-gtins", DataTable)
        if record is None:
            summary.update("no deliveries inspected yet")
            sync_table(gtins, [])
            return
        v = record.verdict
        word = Text("CLEAN", "bold green") if v.clean else Text("DIFFERENCES", "bold red")
        summary.update(Text.assemble(word, f" {record.inspection_id}: {len(v.matched)} matched · {len(v.missing)} missing · "
                                     f"{len(v.unexpected)} unexpected · {len(v.wrong_store)} wrong store"))  # fmt: skip
        names = view.names if view else {}
        rows = []
        for g in v.gtins:
            diff = g.difference
            mark = Text(f"{diff:+d}", "red" if diff < 0 else "yellow") if diff else Text("ok", "green")
            rows.append((g.gtin, (g.gtin, fit(names.get(g.gtin, g.sku or "?"), 20), right(str(g.expected)),
                                  right(str(g.received)), mark)))  # fmt: skip
        sync_table(gtins, rows)

    def action_accept(self) -> None:
        self._decide(True)

    def action_hold(self) -> None:
        self._decide(False)

    def _decide(self, accept: bool) -> None:
        record = self._record()
        if record is None:
            self.app.notify("no inspection selected", severity="warning")
            return
        self.run_worker(partial(self._decision, record.inspection_id, accept), exclusive=True, group="dock-decide")

    async def _decision(self, inspection_id: str, accept: bool) -> None:
        clerk = self.clerk_app.clerk
        assert clerk is not None
        try:
            record = await in_thread(self.clerk_app.data.decide_inspection, clerk, inspection_id, accept)
        except UserError as exc:
            self.app.notify(str(exc), severity="error")
            return
        self.app.notify(f"{record.inspection_id} {record.status}")
        self.reload()
