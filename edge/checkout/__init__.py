"""Offline checkout: a pure engine for Japanese retail sales, tax, points and receipts.

    sale = checkout(SaleRequest(...), products, config, gtin_from_epc=..., sold_serials=...)
    text = render_receipt(sale, config, store_name="...")
    back = refund(sale, receipt_no="...", at=now)

No module here does I/O except `load_checkout_config`, which reads the store's TOML file.
"""

from tenpo.edge.checkout.codes import gtin_check_digit, is_valid_gtin, read_code
from tenpo.edge.checkout.config import (
    CheckoutConfig,
    InStoreLayout,
    Rounding,
    load_checkout_config,
    parse_checkout_config,
)
from tenpo.edge.checkout.engine import checkout, refund
from tenpo.edge.checkout.errors import CheckoutRefused
from tenpo.edge.checkout.model import (
    Discount,
    MemberInfo,
    Payment,
    PointsEntry,
    Product,
    ProductLookup,
    Sale,
    SaleKind,
    SaleLine,
    SaleRequest,
    Scan,
    StockMovement,
    sale_from_json,
    sale_to_json,
)
from tenpo.edge.checkout.receipt import render_receipt, text_width

__all__ = [
    "CheckoutConfig",
    "CheckoutRefused",
    "Discount",
    "InStoreLayout",
    "MemberInfo",
    "Payment",
    "PointsEntry",
    "Product",
    "ProductLookup",
    "Rounding",
    "Sale",
    "SaleKind",
    "SaleLine",
    "SaleRequest",
    "Scan",
    "StockMovement",
    "checkout",
    "gtin_check_digit",
    "is_valid_gtin",
    "load_checkout_config",
    "parse_checkout_config",
    "read_code",
    "refund",
    "render_receipt",
    "sale_from_json",
    "sale_to_json",
    "text_width",
]
