"""The receipt after a sale or refund: the stored text (the one source of a receipt's content), saved on F9."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tenpo.edge.clerk.view import in_thread, run_async, yen
from tenpo.edge.printer.receipt import print_receipt
from tenpo.shared.errors import UserError
from tenpo.shared.ids import id_file


class ReceiptScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,enter", "close", "Close"),
        Binding("f9", "save", "Save receipt"),
        Binding("f8", "reprint", "Print again"),
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
            yield Static("Enter/Esc close · F9 save to a file · F8 print again", classes="muted")

    def on_mount(self) -> None:
        self.run_worker(self._print(reprint=False), group="printer")

    def action_reprint(self) -> None:
        self.run_worker(self._print(reprint=True), group="printer")

    async def _print(self, reprint: bool) -> None:
        """On the store's printer, if it has one ([printer]); the sale is saved whatever happens here."""
        config = self.app.data.config  # type: ignore[attr-defined]
        cash = any(payment.tender == "cash" for payment in getattr(self.sale, "payments", ()))
        outcome = await in_thread(print_receipt, config, self.receipt, cash=cash, reprint=reprint)
        advice = outcome.advice(self.sale.receipt_no)
        if advice:
            self.app.notify(advice.replace("tenpo edge receipt reprint", "F8 or: tenpo edge receipt reprint"),
                            severity="error", timeout=30)  # fmt: skip
        elif reprint and outcome.printed:
            self.app.notify(f"{self.sale.receipt_no} printed again")

    def action_close(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        run_async(self, self._save, exclusive=True, group="receipt")

    async def _save(self) -> None:
        try:
            path = id_file(self.folder, "", self.sale.receipt_no, ".txt")  # the file stays in its folder
        except UserError as exc:
            self.app.notify(str(exc), severity="error")
            return

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.receipt, encoding="utf-8")

        await in_thread(write)
        self.app.notify(f"saved {path}")
