"""This area's tables in the central database (a numbered migration registered in tenpo.cloud.db)."""

from __future__ import annotations

from tenpo.cloud.db_types import column_types


def statements(dialect: str) -> list[str]:
    t = column_types(dialect)  # noqa: F841 - used once the area adds tables
    return []
