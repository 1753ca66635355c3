"""The products table's later columns (a numbered migration registered in tenpo.cloud.db)."""

from __future__ import annotations

VARIANT_COLUMNS = ("style", "colour", "size")  # optional import columns; "color" is read as "colour"


def variant_statements(dialect: str) -> list[str]:
    """Migration 16: the style (品番), colour and size of a product that is one variant of a style."""
    return [*(f"ALTER TABLE products ADD COLUMN {column} TEXT" for column in VARIANT_COLUMNS),
            "CREATE INDEX products_style ON products(style)"]  # fmt: skip
