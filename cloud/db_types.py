"""Column types that differ between SQLite and PostgreSQL, for migrations written once."""

from __future__ import annotations


def column_types(dialect: str) -> dict[str, str]:
    if dialect == "postgresql":
        return {"id": "BIGSERIAL PRIMARY KEY", "int": "BIGINT", "real": "DOUBLE PRECISION", "blob": "BYTEA"}
    return {"id": "INTEGER PRIMARY KEY", "int": "INTEGER", "real": "REAL", "blob": "BLOB"}
