"""What a refund picker needs from the store file: the receipt's lines with what is left of each,
the amount a choice of lines would give back (nothing written), and the reasons a store offers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlite_utils

from tenpo.edge.checkout.config import Rounding
from tenpo.edge.checkout.model import Sale, sale_from_json
from tenpo.edge.checkout.returns import refund, returned_so_far
from tenpo.edge.checkout.store import normalise_receipt_no
from tenpo.edge.config import StoreConfig
from tenpo.shared.errors import UserError

DEFAULT_REASONS = ("お客様都合 changed mind", "不良品 defective", "誤打 rung up wrongly", "その他 other")


@dataclass(frozen=True, slots=True)
class RefundableReceipt:
    sale: Sale
    left: tuple[int, ...]  # per line (0-based): units not yet returned
    earlier: tuple[Sale, ...]  # refunds already made of this receipt

    @property
    def anything_left(self) -> bool:
        return any(self.left)


def refund_reasons(config: StoreConfig) -> tuple[str, ...]:
    """``[clerk] refund_reasons = ["...", ...]`` in the store TOML, else a sensible default."""
    reasons = config.section("clerk").get("refund_reasons")
    if isinstance(reasons, list) and reasons and all(isinstance(r, str) and r.strip() for r in reasons):
        return tuple(r.strip() for r in reasons)
    return DEFAULT_REASONS


def load_refundable(db: sqlite_utils.Database, store_id: str, receipt_no: str) -> RefundableReceipt:
    receipt_no = normalise_receipt_no(store_id, receipt_no)
    row = db.conn.execute("SELECT sale FROM sales WHERE receipt_no = ?", (receipt_no,)).fetchone()
    if row is None:
        raise UserError(f"receipt: {receipt_no} not found in this store")
    sale = sale_from_json(json.loads(row[0]))
    if sale.refund_of:
        raise UserError(f"receipt: {receipt_no} is a refund itself")
    earlier = tuple(sale_from_json(json.loads(data)) for (data,) in db.conn.execute(
        "SELECT sale FROM sales WHERE refund_of = ? ORDER BY receipt_no", (receipt_no,)))  # fmt: skip
    done = returned_so_far(sale, earlier)
    left = tuple(line.qty - done.qty.get(index, 0) for index, line in enumerate(sale.lines))
    return RefundableReceipt(sale, left, earlier)


def preview_refund(receipt: RefundableReceipt, lines: Mapping[int, int | None], at: datetime,
                   rounding: Rounding | None) -> Sale:  # fmt: skip
    """What refunding ``lines`` {line number as printed: qty} would give back; nothing written."""
    return refund(receipt.sale, "preview", at, dict(lines) or None, receipt.earlier, tax_rounding=rounding)
