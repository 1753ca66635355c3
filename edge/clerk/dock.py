"""Dock inspection: the live read at the door, the inspections with their verdicts, accept or hold.

What the door says comes from replica.agent_link (is the agent running) and the reader service's own
report; accepting a delivery that differs from its ASN asks a manager on the spot.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, ProgressBar, Static

from tenpo.edge.clerk.accounts import Clerk
from tenpo.edge.clerk.dialogs import with_manager
from tenpo.edge.clerk.values import DockView
from tenpo.edge.clerk.view import Panel, fit, in_thread, right, run_async, selected_key, sync_table
from tenpo.shared.errors import UserError
from tenpo.shared.terminal import safe_text

if TYPE_CHECKING:
    from tenpo.edge.clerk.app import ClerkApp

STATUS_STYLE = {"pending": "bold yellow", "held": "bold red", "accepted": "green"}


def door_text(view: DockView) -> Text:
    """One line on the dock door: reading, quiet, reader trouble, or why nothing is reported."""
    session = view.session
    if not view.agent_running:
        live = Text("store agent stopped: no live reads at the door (start it: tenpo edge run)", "bold red")
    elif session.get("open"):
        live = Text.assemble(("● reading a delivery", "bold yellow"), f": {session.get('tags', 0)} tags, "
                             f"{session.get('reads', 0)} reads")  # fmt: skip
    elif view.service_state in ("failed", "degraded"):
        live = Text(f"dock reader {view.service_state}: check the reader and its cable", "bold red")
    elif view.service_state:
        live = Text(f"dock reader {view.service_state}; door quiet", "dim")
    else:
        live = Text("agent running; no dock reader configured for this store", "dim")
    if view.next_asn:
        live.append(f" · next ASN {view.next_asn[0]} ({view.next_asn[1]} units)", "dim")
    return live


class DockPanel(Panel):
    LIVE = True
    title = "Dock"
    BINDINGS = [
        Binding("f8", "accept", "Accept"),
        Binding("f9", "hold", "Hold"),
    ]

    @property
    def clerk_app(self) -> ClerkApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static("", id="dock-live")
        yield Static("", id="dock-progress-label", classes="muted")
        yield ProgressBar(id="dock-progress", show_eta=False)
        yield Static("", id="dock-summary")
        inspections: DataTable[Any] = DataTable(id="dock-list", cursor_type="row")
        for key, label in (("id", "inspection"), ("shipment", "shipment"), ("status", "status"), ("units", "recv/exp"),
                           ("diff", "missing/unexp/wrong")):  # fmt: skip
            inspections.add_column(label, key=key)
        yield inspections
        gtins: DataTable[Any] = DataTable(id="dock-gtins", cursor_type="none")
        for key, label in (("gtin", "GTIN"), ("name", "品名"), ("exp", "expected"), ("recv", "received"), ("diff", "±")):
            gtins.add_column(label, key=key)
        yield gtins

    def focus_first(self) -> None:
        self.query_one("#dock-list", DataTable).focus()

    def fetch(self) -> DockView:
        return self.clerk_app.data.dock()

    def show_error(self, message: str) -> None:
        self.query_one("#dock-live", Static).update(Text(safe_text(f"not available: {message}")))

    def show(self, view: DockView) -> None:
        self.view_ = view
        self.query_one("#dock-live", Static).update(door_text(view))
        rows = []
        for r in view.inspections:
            v = r.verdict
            rows.append((r.inspection_id, (r.inspection_id, r.shipment_id or "(no ASN)",
                                           Text(r.status, STATUS_STYLE.get(r.status, "")),
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

    def _progress(self, view: DockView | None, record: Any | None) -> None:
        """The bar, and a label saying what it counts (tags read of the ASN, or units received of expected)."""
        bar = self.query_one("#dock-progress", ProgressBar)
        label = self.query_one("#dock-progress-label", Static)
        if view is not None and view.session.get("open") and view.next_asn:
            tags, expected = int(view.session.get("tags", 0)), view.next_asn[1]
            bar.update(total=max(expected, 1), progress=min(tags, expected))
            label.update(f"reading {view.next_asn[0]}: {tags} of {expected} expected tags")
        elif record is not None:
            v = record.verdict
            bar.update(total=max(v.expected_units, 1), progress=min(v.received_units, max(v.expected_units, 1)))
            label.update(f"{record.inspection_id}: received {v.received_units} of {v.expected_units} expected units")
        else:
            bar.update(total=1, progress=0)
            label.update("received of expected units: no delivery yet")

    def _detail(self) -> None:
        view: DockView | None = getattr(self, "view_", None)
        record = self._record()
        self._progress(view, record)
        summary = self.query_one("#dock-summary", Static)
        gtins = self.query_one("#dock-gtins", DataTable)
        if record is None:
            summary.update("no deliveries inspected yet")
            sync_table(gtins, [])
            return
        v = record.verdict
        word = Text("CLEAN", "bold green") if v.clean else Text("DIFFERENCES", "bold red")
        counts = (f" {len(v.matched)} matched · {len(v.missing)} missing · {len(v.unexpected)} unexpected · "
                  f"{len(v.wrong_store)} wrong store")  # fmt: skip
        if record.status == "accepted":
            tail = Text(f" · accepted by {record.decided_by or '?'}", "green")
        elif not v.clean:
            manager = self.clerk_app.clerk is not None and self.clerk_app.clerk.is_manager
            tail = Text(" · F8 accept the differences or F9 hold" if manager
                        else " · F8 accept (a manager approves) or F9 hold", "yellow")  # fmt: skip
        else:
            tail = Text(" · F8 accept", "dim")
        summary.update(Text.assemble(word, counts, tail))
        names = view.names if view else {}
        rows = []
        for g in v.gtins:
            diff = g.difference
            mark = Text(f"{diff:+d}", "red" if diff < 0 else "yellow") if diff else Text("ok", "green")
            rows.append((g.gtin, (g.gtin, fit(names.get(g.gtin, g.sku or "?"), 20), right(str(g.expected)),
                                  right(str(g.received)), mark)))  # fmt: skip
        sync_table(gtins, rows)

    def action_accept(self) -> None:
        record = self._record()
        if record is None:
            self.app.notify("no inspection selected", severity="warning")
        elif record.status == "accepted":
            self.app.notify(f"{record.inspection_id} is already accepted: nothing to do", severity="information")
        elif not record.verdict.clean:
            with_manager(self.clerk_app, f"accept {record.inspection_id} with differences",
                         lambda approver: self._decide(record.inspection_id, True, approver))  # fmt: skip
        else:
            self._decide(record.inspection_id, True, None)

    def action_hold(self) -> None:
        record = self._record()
        if record is None:
            self.app.notify("no inspection selected", severity="warning")
        elif record.status == "accepted":
            self.app.notify(f"{record.inspection_id} is already accepted: it cannot be held", severity="warning")
        else:
            self._decide(record.inspection_id, False, None)

    def _decide(self, inspection_id: str, accept: bool, approver: Clerk | None) -> None:
        run_async(self, partial(self._decision, inspection_id, accept, approver), exclusive=True, group="dock-decide")

    async def _decision(self, inspection_id: str, accept: bool, approver: Clerk | None) -> None:
        clerk = self.clerk_app.clerk
        assert clerk is not None
        try:
            record = await in_thread(self.clerk_app.data.decide_inspection, clerk, inspection_id, accept, None, approver)
        except UserError as exc:
            self.app.notify(str(exc), severity="error")
            return
        self.app.notify(f"{record.inspection_id} {record.status}")
        self.reload()
