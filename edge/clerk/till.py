"""Checkout: scan (with a quantity: `12*` before the code, or Ctrl+T on a line), see lines and per-rate
tax as you go, attach a member, redeem, pay, receipt; a manager's line discount; refunds (refund_view).

Every change re-prices the basket with the checkout engine (nothing written); only paying commits,
in one transaction through tenpo.edge.checkout.store.commit_sale. A scan the engine refuses never
enters the basket: the basket stays exactly as it was, the message says why, the next scan works.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from tenpo.edge.checkout.model import Discount, DiscountKind, Scan
from tenpo.edge.clerk.accounts import Clerk
from tenpo.edge.clerk.approvals import Approval
from tenpo.edge.clerk.dialogs import with_manager
from tenpo.edge.clerk.receipt_view import ReceiptScreen
from tenpo.edge.clerk.refund_view import start_refund
from tenpo.edge.clerk.values import Preview
from tenpo.edge.clerk.view import (
    Field,
    FormScreen,
    Panel,
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
from tenpo.shared.field_bounds import MAX_FIELD_CHARS  # issue 14: inputs bounded
from tenpo.shared.terminal import safe_text

if TYPE_CHECKING:
    from tenpo.edge.clerk.app import ClerkApp

MAX_QTY = 999


def parse_entry(text: str) -> Scan:
    """'4901085089583' -> one unit; '12*4901085089583' (or 12×, full-width digits) -> twelve, as tills take it."""
    text = text.strip().translate(str.maketrans("０１２３４５６７８９＊×x", "0123456789***"))
    count, star, code = text.partition("*")
    if not star:
        return Scan(text)
    if not count.strip().isdigit() or not 1 <= int(count) <= MAX_QTY:
        raise UserError(f"quantity {count.strip()!r}: 1 to {MAX_QTY}, typed before * (like 12*)")
    if not code.strip():
        raise UserError(f"{count.strip()}*: now scan the item")
    return Scan(code.strip(), int(count))


def parse_line_discount(text: str, unit_price: int, qty: int) -> Discount:
    """'100' yen off, '10%' off, or '@800' a new unit price (the difference off the line)."""
    text = text.strip().translate(str.maketrans("０１２３４５６７８９％＠￥", "0123456789%@¥"))
    if text.startswith("@"):
        price = text[1:].removeprefix("¥").replace(",", "")
        if not price.isdigit() or int(price) >= unit_price:
            raise UserError(f"discount: a new price below {yen(unit_price)}, like @{unit_price * 8 // 10}")
        return Discount(DiscountKind.AMOUNT, (unit_price - int(price)) * qty, "price override")
    try:
        return Discount.parse(text, "line discount")
    except ValueError as exc:
        raise UserError(f"discount: {exc}") from None


class CheckoutPanel(Panel):
    title = "Checkout"
    BINDINGS = [
        Binding("f8", "member", "Member"),
        Binding("f9", "points", "Points"),
        Binding("f10", "pay", "Pay"),
        Binding("ctrl+t", "quantity", "Qty", show=False),
        Binding("ctrl+g", "discount", "Discount", show=False),
        Binding("ctrl+n", "new_sale", "New sale", show=False),
        Binding("ctrl+r", "refund", "Refund"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scans: list[Scan] = []
        self.member_id: str | None = None
        self.redeem = 0
        self.preview: Preview | None = None

    @property
    def clerk_app(self) -> ClerkApp:
        return self.app  # type: ignore[return-value]

    @property
    def codes(self) -> list[Scan]:
        """The basket's scans (kept under this name for callers that clear the basket)."""
        return self.scans

    def compose(self) -> ComposeResult:
        yield Static("", id="till-totals")
        yield Static("no member · F8 to attach one", id="till-member")
        yield Input(placeholder="scan a JAN / EPC / sku:SKU · 12*JAN for 12", id="till-code", compact=True,
                    max_length=MAX_FIELD_CHARS)  # fmt: skip
        yield Static("", id="till-error", classes="field-error")
        table: LinesTable = LinesTable(id="till-lines", cursor_type="row")
        for key, label in (("name", "品名 item"), ("qty", "qty"), ("unit", "unit"), ("rate", "tax"), ("total", "amount")):
            table.add_column(label, key=key)
        yield table
        yield Static("", id="till-tax", classes="muted")

    def focus_first(self) -> None:
        self.query_one("#till-code", Input).focus()

    @property
    def open_basket(self) -> bool:
        return bool(self.scans or self.member_id)

    # ------------------------------------------------------------------ basket

    @on(Input.Submitted, "#till-code")
    def _scanned(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.value = ""
        if not text:
            return
        try:
            scan = parse_entry(text)
        except UserError as exc:
            self.show_error(str(exc))
            return
        run_async(self, partial(self._add, scan), group="scan")

    async def _add(self, scan: Scan) -> None:
        """Price the basket with the new scan; a scan that makes it fail is not added."""
        data = self.clerk_app.data
        before = tuple(self.scans)
        trial = await in_thread(data.preview, (*before, scan), self.member_id, self.redeem)
        if trial.error:
            basket_was_fine = self.preview is None or self.preview.error is None
            alone = None if basket_was_fine else await in_thread(data.preview, (scan,), None, 0)
            if basket_was_fine or (alone is not None and alone.error):
                self.show_error(f"{scan.code}: {trial.error} (not added)")
                return
        if tuple(self.scans) != before:  # the basket changed meanwhile (a faster scan): re-check on top of it
            run_async(self, partial(self._add, scan), group="scan")
            return
        self.scans.append(scan)
        self.show(trial)

    def remove_line(self, code: str) -> None:
        """One unit less of the selected line: its last scan goes (or counts one less)."""
        for index in range(len(self.scans) - 1, -1, -1):
            scan = self.scans[index]
            if scan.code == code:
                if scan.qty > 1:
                    self.scans[index] = dataclasses.replace(scan, qty=scan.qty - 1)
                else:
                    del self.scans[index]
                break
        self.reload()

    def _line_code(self) -> str | None:
        """The line picked in the table (when the clerk went there), else the last one scanned."""
        table = self.query_one("#till-lines", DataTable)
        key = selected_key(table) if table.has_focus else None
        if key is None:
            return self.scans[-1].code if self.scans else None
        return key.partition(":")[2]

    def _replace_line(self, code: str, qty: int, discount: Discount | None) -> None:
        first = next(i for i, s in enumerate(self.scans) if s.code == code)
        self.scans[:] = [s for s in self.scans if s.code != code]
        self.scans.insert(first, Scan(code, qty, discount))
        self.reload()

    def action_quantity(self) -> None:
        code = self._line_code()
        if code is None:
            self.app.notify("scan an item first (or type 12* before the code)", severity="warning")
            return
        current = sum(s.qty for s in self.scans if s.code == code)
        discount = next((s.discount for s in self.scans if s.code == code and s.discount), None)

        def submit(values: dict[str, str]) -> int:
            text = values["qty"].strip()
            if not text.isdigit() or not 1 <= int(text) <= MAX_QTY:
                raise UserError(f"qty: 1 to {MAX_QTY} (Delete on the line takes one off)")
            return int(text)

        def set_qty(qty: int) -> None:
            self._replace_line(code, qty, discount)

        self.app.push_screen(FormScreen(f"数量 · quantity of {code}", (Field("qty", "数量 qty", value=str(current)),),
                                        submit), if_answered(set_qty))  # fmt: skip

    def action_discount(self) -> None:
        code = self._line_code()
        sale = self.preview.sale if self.preview else None
        line = next((ln for ln in (sale.lines if sale else ()) if ln.code == code), None)
        if code is None or line is None:
            self.app.notify("select a line first", severity="warning")
            return
        qty = sum(s.qty for s in self.scans if s.code == code)
        clerk, data = self.clerk_app.clerk, self.clerk_app.data
        assert clerk is not None

        def approved(approver: Clerk | None) -> None:
            def submit(values: dict[str, str]) -> Discount:
                discount = parse_line_discount(values["discount"], line.unit_price, qty)
                data.authorise(clerk, approver, Approval.LINE_DISCOUNT, f"{line.sku} x{qty} {values['discount'].strip()}")
                return discount

            def set_discount(given: Discount) -> None:
                self._replace_line(code, qty, given)

            self.app.push_screen(FormScreen(f"値引 · {fit(line.name, 20)} {yen(line.unit_price)} x{qty}",
                                            (Field("discount", "値引 discount", "100 · 10% · @800 new price"),), submit),
                                 if_answered(set_discount))  # fmt: skip

        with_manager(self.clerk_app, "line discount / price", approved)

    def attach(self, member_id: str | None) -> None:
        self.member_id = member_id
        self.redeem = 0
        self.reload()

    def action_new_sale(self) -> None:
        self.scans.clear()
        self.attach(None)
        self.focus_first()

    def fetch(self) -> Preview:
        return self.clerk_app.data.preview(tuple(self.scans), self.member_id, self.redeem)

    def show_error(self, message: str) -> None:
        self.query_one("#till-error", Static).update(Text(safe_text(f"✗ {message}")))

    def show(self, preview: Preview) -> None:
        self.preview = preview
        member = self.query_one("#till-member", Static)
        if self.member_id:
            member.update(Text.assemble("member ", (preview.member_name or self.member_id, "bold"),
                                        f" · {preview.member_points or 0:,} pt · redeem {self.redeem:,} (F9)"))  # fmt: skip
        else:
            member.update("no member · F8 to attach one")
        self.query_one("#till-error", Static).update(Text(safe_text(f"✗ {preview.error}")) if preview.error else "")
        sale = preview.sale
        if sale is None and preview.error and self.scans:
            return  # keep the last good basket on screen; the error says what to fix
        lines = sale.lines if sale else ()
        rows = [
            (f"{n}:{line.code}", (fit(("※" if line.tax_class == "reduced" else "") + line.name, 24), right(str(line.qty)),
                                  right(yen(line.unit_price)), f"{line.rate}%",
                                  right(yen(line.total) + (" 値引" if line.discount else ""))))
            for n, line in enumerate(lines)
        ]  # fmt: skip
        sync_table(self.query_one("#till-lines", DataTable), rows)
        self.query_one("#till-totals", Static).update(totals_text(sale))
        self.query_one("#till-tax", Static).update(tax_text(sale))

    # ------------------------------------------------------------------ member and points

    def action_member(self) -> None:
        data = self.clerk_app.data

        def submit(values: dict[str, str]) -> str:
            return data.resolve_member(values["member"]).member_id

        self.app.push_screen(
            FormScreen("会員 · attach a member", (Field("member", "会員 member", "card, phone (or last 4), name"),), submit),
            if_answered(self.attach),
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

        balance = self.preview.member_points if self.preview else None
        link = self.clerk_app.link
        note = f"balance {balance or 0:,} pt"
        if link is not None and not link.online:
            note = (f"offline: balance {balance or 0:,} pt as this store knows it; at most "
                    f"{self.clerk_app.data.offline_cap():,} pt per member until HQ is back")  # fmt: skip
        fields = (Field("points", "ポイント points", value=str(self.redeem)),)
        self.app.push_screen(FormScreen("ポイント利用 · redeem points", fields, submit, note), done)

    # ------------------------------------------------------------------ pay and refund

    def action_pay(self) -> None:
        sale = self.preview.sale if self.preview else None
        if not self.scans or sale is None:
            self.app.notify("nothing to pay: scan items first (and fix any error shown)", severity="warning")
            return
        due = sale.total - sale.points_redeemed
        app = self.clerk_app
        scans, member_id, redeem = tuple(self.scans), self.member_id, self.redeem

        def submit(values: dict[str, str]) -> tuple[Any, str]:
            tender = values["tender"].strip().lower() or "cash"
            amount = values["amount"].strip().replace(",", "").removeprefix("¥")
            if not amount.isdigit():
                raise UserError("amount: yen as a whole number")
            return app.data.sell(scans, member_id, redeem, ((tender, int(amount)),) if int(amount) else (), app.clerk)

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
        start_refund(self.clerk_app)


class LinesTable(DataTable[Any]):
    BINDINGS = [Binding("delete", "remove", "Remove one")]

    def action_remove(self) -> None:
        key = selected_key(self)
        if key:
            panel = next(a for a in self.ancestors if isinstance(a, CheckoutPanel))
            panel.remove_line(key.partition(":")[2])


def totals_text(sale: Any | None) -> Text:
    """The amount to collect, first and on one line, so it is on screen at the smallest size."""
    if sale is None:
        return Text("合計 total ¥0", "bold")
    due = sale.total - sale.points_redeemed
    text = Text.assemble(("合計 total ", "bold"), (yen(sale.total), "bold"))
    if sale.points_redeemed:
        text.append(f" · pt -{sale.points_redeemed:,}")
    text.append(" · お預り due ", "bold")
    text.append(yen(due), "bold reverse")
    return text


def tax_text(sale: Any | None) -> Text:
    if sale is None:
        return Text("")
    text = Text(f"小計 {yen(sale.subtotal)}")
    if sale.receipt_discount:
        text.append(f" · 値引 -{yen(sale.receipt_discount)}")
    for r in sorted(sale.rates, key=lambda r: -r.rate):
        text.append(f" · {r.rate}%対象 {yen(r.taxable)} (税 {yen(r.tax)})")
    if sale.member_id:
        text.append(f" · earns {sale.points_earned:,} pt")
    return text
