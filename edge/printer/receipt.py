"""The one call a till makes after a sale: print its receipt if the store has a printer.

The sale is committed before this is called, so a printer problem never loses it: the outcome says
what went wrong and the receipt can be printed again (`tenpo edge receipt reprint RECEIPT_NO`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tenpo.edge.config import StoreConfig
from tenpo.edge.printer import escpos
from tenpo.edge.printer.port import PrinterError, send
from tenpo.edge.printer.settings import PrinterSettings, parse_printer
from tenpo.shared.errors import ConfigError

REPRINT_MARK = "** 再発行 REPRINT **"

Sender = Callable[[PrinterSettings, bytes], None]


@dataclass(frozen=True, slots=True)
class PrintOutcome:
    configured: bool  # False: no [printer]; the text receipt is all there is
    printed: bool
    error: str | None = None  # one line for the clerk when a configured printer failed

    def advice(self, receipt_no: str) -> str | None:
        """What to tell the clerk, or None when there is nothing to say."""
        if self.error is None:
            return None
        return (f"{self.error} — sale {receipt_no} is saved; print it again with: "
                f"tenpo edge receipt reprint {receipt_no} --clerk ID")


def printer_settings(config: StoreConfig) -> PrinterSettings | None:
    return parse_printer(config.section("printer"), config.path)


def print_receipt(config: StoreConfig, receipt_text: str, *, cash: bool = False, reprint: bool = False,
                  sender: Sender = send) -> PrintOutcome:  # fmt: skip
    """Print ``receipt_text`` (the stored receipt) and, for a cash sale, open the drawer. Never raises."""
    try:
        settings = printer_settings(config)
    except ConfigError as exc:
        return PrintOutcome(configured=True, printed=False, error=str(exc))
    if settings is None:
        return PrintOutcome(configured=False, printed=False)
    text = f"{REPRINT_MARK}\n{receipt_text}" if reprint else receipt_text
    job = escpos.receipt_job(text, open_drawer=cash and settings.drawer and not reprint, drawer_pin=settings.drawer_pin)
    try:
        sender(settings, job)
    except PrinterError as exc:
        return PrintOutcome(configured=True, printed=False, error=str(exc))
    return PrintOutcome(configured=True, printed=True)
