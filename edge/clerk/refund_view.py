"""返品: find the receipt, pick its lines (and how many of each) from the receipt itself, choose a reason
from the store's list, see and confirm the amount, then a manager approves on the spot."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, OptionList, Static

from tenpo.edge.clerk.accounts import Clerk
from tenpo.edge.clerk.dialogs import ConfirmScreen, with_manager
from tenpo.edge.clerk.receipt_view import ReceiptScreen
from tenpo.edge.clerk.refunds import RefundableReceipt, refund_reasons
from tenpo.edge.clerk.view import (
    Field,
    FormScreen,
    fit,
    if_answered,
    in_thread,
    right,
    run_async,
    selected_key,
    sync_table,
    yen,
)
from tenpo.shared.errors import UserError

if TYPE_CHECKING:
    from tenpo.edge.clerk.app import ClerkApp


def start_refund(app: ClerkApp) -> None:
    """Ask for the receipt number, then open the picker on that receipt."""

    def submit(values: dict[str, str]) -> RefundableReceipt:
        receipt = app.data.refundable(values["receipt"])
        if not receipt.anything_left:
            raise UserError(f"receipt: {receipt.sale.receipt_no} is already refunded in full")
        return receipt

    fields = (Field("receipt", "レシート receipt", "S001-00000042 or 42"),)
    app.push_screen(FormScreen("返品 · refund: which receipt?", fields, submit),
                    lambda receipt: receipt and app.push_screen(RefundScreen(receipt)))  # fmt: skip


class RefundScreen(ModalScreen[None]):
    """Lines of the receipt: + / - pick how many come back, A all that is left; Tab to the reasons."""

    BINDINGS = [
        Binding("plus,equals_sign,right,space", "pick(1)", "+1", show=False),
        Binding("minus,left", "pick(-1)", "-1", show=False),
        Binding("a", "pick_all", "All"),
        Binding("f10", "refund", "Refund"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, receipt: RefundableReceipt) -> None:
        super().__init__()
        self.receipt = receipt
        self.picked: dict[int, int] = {}  # line number as printed -> qty coming back
        self.amount: int | None = None

    @property
    def clerk_app(self) -> ClerkApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        sale = self.receipt.sale
        with Vertical(classes="dialog", id="refund-dialog"):
            yield Static(f"返品 · {sale.receipt_no} · {sale.at:%m-%d %H:%M} · total {yen(sale.total)}",
                         classes="dialog-title")  # fmt: skip
            table: DataTable[Any] = DataTable(id="refund-lines", cursor_type="row")
            for key, label in (("no", "#"), ("name", "品名"), ("sold", "sold"), ("left", "left"), ("back", "返品"),
                               ("unit", "unit")):  # fmt: skip
                table.add_column(label, key=key)
            yield table
            yield Static("理由 reason (Tab)", classes="section")
            yield OptionList(*refund_reasons(self.clerk_app.data.config), id="refund-reason")
            yield Static("", id="refund-amount")
            yield Static("+/- pick · A all · F10 refund · Esc", classes="muted")

    def on_mount(self) -> None:
        self.query_one("#refund-reason", OptionList).highlighted = None
        self._paint()
        self.query_one("#refund-lines", DataTable).focus()

    def _paint(self) -> None:
        rows = []
        for index, line in enumerate(self.receipt.sale.lines):
            number = index + 1
            back = self.picked.get(number, 0)
            rows.append((str(number), (str(number), fit(line.name, 18), right(str(line.qty)),
                                       right(str(self.receipt.left[index])),
                                       Text(str(back), "bold yellow") if back else Text("0", "dim"),
                                       right(yen(line.unit_price)))))  # fmt: skip
        sync_table(self.query_one("#refund-lines", DataTable), rows)
        amount = self.query_one("#refund-amount", Static)
        if not self.picked:
            amount.update(Text("pick the lines coming back", "dim"))
        elif self.amount is None:
            amount.update("…")
        else:
            amount.update(Text.assemble(("返金 refund ", "bold"), (yen(-self.amount), "bold reverse")))

    def action_pick(self, step: int) -> None:
        key = selected_key(self.query_one("#refund-lines", DataTable))
        if key is None:
            return
        number = int(key)
        left = self.receipt.left[number - 1]
        qty = max(0, min(left, self.picked.get(number, 0) + step))
        if qty:
            self.picked[number] = qty
        else:
            self.picked.pop(number, None)
        if step > 0 and not left:
            self.app.notify(f"line {number}: already returned", severity="warning")
        self._repriced()

    def action_pick_all(self) -> None:
        self.picked = {i + 1: left for i, left in enumerate(self.receipt.left) if left}
        self._repriced()

    def _repriced(self) -> None:
        self.amount = None
        self._paint()
        if self.picked:
            run_async(self, self._price, exclusive=True, group="refund-price")

    async def _price(self) -> None:
        picked = dict(self.picked)
        try:
            back = await in_thread(self.clerk_app.data.refund_preview, self.receipt, dict(picked))
        except UserError as exc:
            self.query_one("#refund-amount", Static).update(Text(f"✗ {exc}", "red"))
            return
        if picked == self.picked:
            self.amount = back.total
            self._paint()

    @on(OptionList.OptionSelected, "#refund-reason")
    def _reason_chosen(self) -> None:
        self.action_refund()

    def reason(self) -> str | None:
        options = self.query_one("#refund-reason", OptionList)
        if options.highlighted is None:
            return None
        return str(options.get_option_at_index(options.highlighted).prompt)

    def action_refund(self) -> None:
        reason = self.reason()
        if not self.picked or self.amount is None:
            self.app.notify("pick the lines coming back first (+ on a line, A for all)", severity="warning")
            return
        if reason is None:
            self.app.notify("choose a reason (Tab, ↑↓, Enter)", severity="warning")
            self.query_one("#refund-reason", OptionList).focus()
            return
        amount = self.amount
        lines = ", ".join(f"#{n}×{q}" for n, q in sorted(self.picked.items()))
        body = Text.assemble(("返金 ", "bold"), (yen(-amount), "bold"), f" for {self.receipt.sale.receipt_no}\n"
                             f"lines {lines}\nreason: {reason}")  # fmt: skip
        self.app.push_screen(ConfirmScreen("返品の確認 · confirm the refund", body, "Enter refund"),
                             if_answered(lambda yes: with_manager(self.clerk_app, f"refund {yen(-amount)}",
                                                                  lambda approver: self._commit(reason, approver))))  # fmt: skip

    def _commit(self, reason: str, approver: Clerk | None) -> None:
        run_async(self, partial(self._refund, reason, approver), exclusive=True, group="refund")

    async def _refund(self, reason: str, approver: Clerk | None) -> None:
        app = self.clerk_app
        assert app.clerk is not None
        try:
            sale, receipt = await in_thread(app.data.refund, app.clerk, self.receipt.sale.receipt_no,
                                            dict(self.picked), reason, approver)  # fmt: skip
        except UserError as exc:
            self.query_one("#refund-amount", Static).update(Text(f"✗ {exc}", "red"))
            return
        self.dismiss(None)
        app.push_screen(ReceiptScreen(sale, receipt, app.receipts_dir))

    def action_cancel(self) -> None:
        self.dismiss(None)


