"""Checkout: scan, see lines and per-rate tax as you go, attach a member, redeem, pay, receipt; refunds.

Every change re-prices the basket with the checkout engine (nothing written); only paying commits,
in one transaction through tenpo.edge.checkout.store.commit_sale.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from tenpo.edge.clerk.data import Preview
from tenpo.edge.clerk.view import Field, FormScreen, Panel, fit, in_thread, right, selected_key, sync_table, yen
from tenpo.shared.errors import UserError

if TYPE_CHECKING:
    from tenpo.edge.clerk.app import ClerkApp


class CheckoutPanel(Panel):
    title = "Checkout"
    BINDINGS = [
        Binding("f8", "member", "Member"),
        Binding("f9", "points", "Points"),
        Binding("f10", "pay", "Pay"),
        Binding("ctrl+n", "new_sale", "New sale"),
        Binding("ctrl+r", "refund", "Refund"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.codes: list[str] = []
        self.member_id: str | None = None
        self.redeem = 0
        self.preview: Preview | None = None

    @property
    def clerk_app(self) -> ClerkApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static("no member · F8 to attach one", id="till-member")
        yield Input(placeholder="scan or type a JAN, RFID EPC or sku:SKU, then Enter", id="till-code", compact=True)
        table: LinesTable = LinesTable(id="till-lines", cursor_type="row")
        for key, label in (("name", "品名 item"), ("qty", "qty"), ("unit", "unit"), ("rate", "tax"), ("total", "amount")):
            table.add_column(label, key=key)
        yield table
        yield Static("", id="till-totals")
        yield Static("", id="till-error", classes="field-error")

    def focus_first(self) -> None:
        self.query_one("#till-code", Input).focus()

    # ------------------------------------------------------------------ basket

    @on(Input.Submitted, "#till-code")
    def _scanned(self, event: Input.Submitted) -> None:
        code = event.value.strip()
        event.input.value = ""
        if code:
            self.codes.append(code)
            self.reload()

    def remove_line(self, code: str) -> None:
        """One unit less of the selected line: its last scan goes."""
        for index in range(len(self.codes) - 1, -1, -1):
            if self.codes[index] == code:
                del self.codes[index]
                break
        self.reload()

    def attach(self, member_id: str | None) -> None:
        self.member_id = member_id
        self.redeem = 0
        self.reload()

    def action_new_sale(self) -> None:
        self.codes.clear()
        self.attach(None)
        self.focus_first()

    def fetch(self) -> Preview:
        return self.clerk_app.data.preview(tuple(self.codes), self.member_id, self.redeem)

    def show_error(self, message: str) -> None:
        self.query_one("#till-error", Static).update(f"✗ {message}")

    def show(self, preview: Preview) -> None:
        self.preview = preview
        member = self.query_one("#till-member", Static)
        if self.member_id:
            member.update(Text.assemble("member ", (preview.member_name or self.member_id, "bold"),
                                        f" · {preview.member_points or 0:,} pt · redeem {self.redeem:,} pt (F9)"))  # fmt: skip
        else:
            member.update("no member · F8 to attach one")
        self.query_one("#till-error", Static).update(f"✗ {preview.error}" if preview.error else "")
        sale = preview.sale
        if sale is None and preview.error and self.codes:
            return  # keep the last good basket on screen; the error says what to fix
        lines = sale.lines if sale else ()
        rows = [
            (f"{n}:{line.code}", (fit(("※" if line.tax_class == "reduced" else "") + line.name, 28), right(str(line.qty)),
                                  right(yen(line.unit_price)), f"{line.rate}%", right(yen(line.total))))  # fmt: skip
            for n, line in enumerate(lines)
        ]
        sync_table(self.query_one("#till-lines", DataTable), rows)
        self.query_one("#till-totals", Static).update(totals_text(sale))

    # ------------------------------------------------------------------ member and points

    def action_member(self) -> None:
        data = self.clerk_app.data

        def submit(values: dict[str, str]) -> str:
            return data.resolve_member(values["member"]).member_id

        self.app.push_screen(
            FormScreen("会員 · attach a member", (Field("member", "会員 member", "card, phone, e-mail or name"),), submit),
            lambda member_id: member_id and self.attach(member_id),
        )

    def action_points(self) -> None:
        if not self.member_id:
            self.app.notify("attach a member first (F8)", severity="warning")
            return

        def submit(values: dict[str, str]) -> int:
            text = values["points"].strip() or "0"
            if not text.isdigit():
                raise UserError("points: a whole number of points (1 pt = ¥1)")
            return int(text)

        def done(points: int | None) -> None:
            if points is not None:
                self.redeem = points
                self.reload()

        fields = (Field("points", "ポイント points", value=str(self.redeem)),)
        self.app.push_screen(FormScreen("ポイント利用 · redeem points", fields, submit,
                                        "offline: limited by the store's per-sale cap"), done)  # fmt: skip

    # ------------------------------------------------------------------ pay and refund

    def action_pay(self) -> None:
        sale = self.preview.sale if self.preview else None
        if not self.codes or sale is None:
            self.app.notify("nothing to pay: scan items first (and fix any error shown)", severity="warning")
            return
        due = sale.total - sale.points_redeemed
        data, codes, member_id, redeem = self.clerk_app.data, tuple(self.codes), self.member_id, self.redeem

        def submit(values: dict[str, str]) -> tuple[Any, str]:
            tender = values["tender"].strip().lower() or "cash"
            amount = values["amount"].strip().replace(",", "").removeprefix("¥")
            if not amount.isdigit():
                raise UserError("amount: yen as a whole number")
            return data.sell(codes, member_id, redeem, ((tender, int(amount)),) if int(amount) else ())

        fields = (Field("tender", "支払 tender", "cash, card, qr, emoney", value="cash"),
                  Field("amount", "預り amount", value=str(due)))  # fmt: skip
        self.app.push_screen(FormScreen(f"お会計 · due {yen(due)}", fields, submit), self._sold)

    def _sold(self, result: tuple[Any, str] | None) -> None:
        if result is None:
            return
        sale, receipt = result
        self.action_new_sale()
        self.app.push_screen(ReceiptScreen(sale, receipt, self.clerk_app.receipts_dir))

    def action_refund(self) -> None:
        clerk = self.clerk_app.clerk
        assert clerk is not None
        if not clerk.is_manager:
            self.app.notify("refund: needs a manager (sign in as one, Ctrl+L)", severity="error")
            return
        data = self.clerk_app.data

        def submit(values: dict[str, str]) -> tuple[Any, str]:
            return data.refund(clerk, values["receipt"], values.get("lines", ""))

        fields = (Field("receipt", "レシート receipt", "S001-00000042 or 42"),
                  Field("lines", "返品する行 lines (empty: all)", "2  or  1,3:2 (line:qty)"))  # fmt: skip
        self.app.push_screen(FormScreen("返品 · refund", fields, submit), self._refunded)

    def _refunded(self, result: tuple[Any, str] | None) -> None:
        if result is not None:
            sale, receipt = result
            self.app.push_screen(ReceiptScreen(sale, receipt, self.clerk_app.receipts_dir))


class LinesTable(DataTable):
    BINDINGS = [Binding("delete", "remove", "Remove one")]

    def action_remove(self) -> None:
        key = selected_key(self)
        if key:
            panel = next(a for a in self.ancestors if isinstance(a, CheckoutPanel))
            panel.remove_line(key.partition(":")[2])


def totals_text(sale: Any | None) -> Text:
    if sale is None:
        return Text("合計 total ¥0", "dim")
    text = Text(f"小計 {yen(sale.subtotal)}")
    if sale.receipt_discount:
        text.append(f" · 値引 -{yen(sale.receipt_discount)}")
    for r in sorted(sale.rates, key=lambda r: -r.rate):
        text.append(f" · {r.rate}%対象 {yen(r.taxable)} (税 {yen(r.tax)})")
    text.append("\n合計 total ", "bold")
    text.append(yen(sale.total), "bold")
    if sale.points_redeemed:
        text.append(f" · points -{sale.points_redeemed:,} · due {yen(sale.total - sale.points_redeemed)}")
    if sale.member_id:
        text.append(f" · earns {sale.points_earned:,} pt")
    return text


class ReceiptScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,enter", "close", "Close"),
        Binding("f9", "save", "Save receipt"),
    ]

    def __init__(self, sale: Any, receipt: str, folder: Path) -> None:
        super().__init__()
        self.sale = sale
        self.receipt = receipt
        self.folder = folder

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog receipt"):
            head = "返金 refund" if self.sale.kind == "refund" else f"お釣り change {yen(self.sale.change)}"
            yield Static(Text(f"{self.sale.receipt_no} · total {yen(self.sale.total)} · {head}", "bold"), id="receipt-head")
            yield Static(Text(self.receipt), id="receipt-text")
            yield Static("Enter/Esc close · F9 save to a file", classes="muted")

    def action_close(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        self.run_worker(self._save, exclusive=True, group="receipt")

    async def _save(self) -> None:
        path = self.folder / f"{self.sale.receipt_no}.txt"

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.receipt, encoding="utf-8")

        await in_thread(write)
        self.app.notify(f"saved {path}")
