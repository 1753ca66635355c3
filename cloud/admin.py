"""HQ administration: registering stores and importing the product list into the change feed."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

from tenpo.cloud.changes import audit, record_changes
from tenpo.cloud.db import Central
from tenpo.cloud.plan import ChangeTuple
from tenpo.cloud.products_schema import VARIANT_COLUMNS
from tenpo.shared import crypto
from tenpo.shared.errors import ConfigError, UserError
from tenpo.shared.ids import is_id
from tenpo.shared.protocol import valid_store_id
from tenpo.shared.variants import Variant, VariantError, clean_variant

TAX_CLASSES = ("standard", "reduced")
PRODUCT_COLUMNS = ("sku", "jan", "name", "price", "tax_class")


def add_store(db: Central, store_id: str, public_key_pem: str, name: str | None = None) -> bool:
    """Register a store (or replace its key); True if it is new."""
    if not valid_store_id(store_id):
        raise UserError(f"store id {store_id!r}: only letters, digits, '-' and '_' (1-32)")
    try:
        crypto.load_public_key_pem(public_key_pem)
    except ConfigError as exc:
        raise UserError(f"public key: {exc}") from None
    with db.transaction():
        exists = db.scalar("SELECT 1 FROM stores WHERE store_id = ?", (store_id,))
        if exists:
            db.execute("UPDATE stores SET public_key = ?, name = coalesce(?, name) WHERE store_id = ?",
                       (public_key_pem, name, store_id))  # fmt: skip
        else:
            db.execute("INSERT INTO stores(store_id, name, public_key, registered_at) VALUES (?, ?, ?, ?)",
                       (store_id, name, public_key_pem, time.time()))  # fmt: skip
        audit(db, "operator", "store.key_replaced" if exists else "store.registered", store_id, {})
    return not exists


@dataclass(frozen=True, slots=True)
class ImportReport:
    created: int
    updated: int
    unchanged: int
    rejected: list[tuple[int, str]]  # (line number, reason)


def _variant(row: dict[str, str], line: int) -> Variant:
    try:
        return clean_variant(row.get("style"), row.get("colour", row.get("color")), row.get("size"))
    except VariantError as exc:
        raise UserError(f"line {line}: {exc}") from None


def _validate_product(row: dict[str, str], line: int) -> tuple[str, str | None, str, int, str]:
    sku = (row.get("sku") or "").strip()
    if not sku:
        raise UserError(f"line {line}: sku is empty")
    if not is_id(sku):  # it names rows on every store and in topics: one strict pattern (shared/ids.py)
        raise UserError(f"line {line}: sku {sku[:40]!r}: letters, digits and . _ : - only, at most 128")
    jan = (row.get("jan") or "").strip() or None
    if jan is not None and (not jan.isdigit() or len(jan) not in (8, 12, 13, 14)):
        raise UserError(f"line {line}: jan {jan!r} must be 8, 12, 13 or 14 digits")
    name = (row.get("name") or "").strip()
    if not name:
        raise UserError(f"line {line}: name is empty")
    try:
        price = int((row.get("price") or "").strip())
    except ValueError:
        raise UserError(f"line {line}: price {row.get('price')!r} is not a whole number of yen") from None
    if price < 0:
        raise UserError(f"line {line}: price must not be negative")
    tax_class = (row.get("tax_class") or "").strip()
    if tax_class not in TAX_CLASSES:
        raise UserError(f"line {line}: tax_class {tax_class!r} must be one of {', '.join(TAX_CLASSES)}")
    return sku, jan, name, price, tax_class


def import_products(db: Central, path: Path) -> ImportReport:
    """Upsert products from CSV (sku, jan, name, price, tax_class; optionally style, colour, size for a
    variant of a style); each real change goes down to every store."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in PRODUCT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    created = updated = unchanged = 0
    rejected: list[tuple[int, str]] = []
    now = time.time()
    with db.transaction():
        changes: list[ChangeTuple] = []
        for line, row in enumerate(reader, start=2):
            try:
                sku, jan, name, price, tax_class = _validate_product(row, line)
                variant = _variant(row, line)
            except UserError as exc:
                rejected.append((line, str(exc)))
                continue
            current = db.one("SELECT jan, name, price, tax_class, style, colour, size FROM products WHERE sku = ?", (sku,))
            wanted = (jan, name, price, tax_class, variant.style, variant.colour, variant.size)
            if current is not None and tuple(current) == wanted:
                unchanged += 1
                continue
            if current is None:
                created += 1
            else:
                updated += 1
            data: dict[str, object] = {"sku": sku, "jan": jan, "name": name, "price": price, "tax_class": tax_class,
                                       "version": 0}  # fmt: skip
            data.update((k, v) for k, v in zip(VARIANT_COLUMNS, wanted[4:]) if v is not None)
            changes.append(("product.upsert", sku, None, data))
            db.execute(
                "INSERT INTO products(sku, jan, name, price, tax_class, style, colour, size, version, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT(sku) DO UPDATE SET jan = excluded.jan,"
                " name = excluded.name, price = excluded.price, tax_class = excluded.tax_class, style = excluded.style,"
                " colour = excluded.colour, size = excluded.size, updated_at = excluded.updated_at",
                (sku, *wanted, now),
            )
        seqs = record_changes(db, changes, now)
        db.executemany("UPDATE products SET version = ? WHERE sku = ?", [(seq, c[1]) for seq, c in zip(seqs, changes)])
    return ImportReport(created, updated, unchanged, rejected)

