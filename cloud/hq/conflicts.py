"""The conflicts view's window onto the sales area (``tenpo.cloud.sales.conflicts``).

The sales area owns conflict detection and resolution; the monitor only lists and calls. If its
table is not there yet (a database older than the sales migration), the view says so instead of failing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from tenpo.cloud.db import Central
from tenpo.cloud.sales import conflicts as sales_conflicts
from tenpo.cloud.status import table_exists


@dataclass(frozen=True, slots=True)
class ConflictRow:
    id: str
    kind: str
    store_id: str
    subject: str
    level: int | None  # balance or on-hand when last detected
    detail: dict[str, Any] | str | None  # as the sales area gave it, without its entries (describe.conflict_detail)
    entries: tuple[dict[str, Any], ...]  # the ledger entries on both sides (describe.conflict_entry)
    status: str
    at: float | None


def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return item
    if dataclasses.is_dataclass(item):
        return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    if hasattr(item, "__struct_fields__"):  # msgspec Struct
        return {name: getattr(item, name) for name in item.__struct_fields__}
    return dict(getattr(item, "_asdict", lambda: {})())


def _row(item: Any) -> ConflictRow:
    d = _as_dict(item)

    def pick(*names: str) -> Any:
        return next((d[n] for n in names if d.get(n) is not None), None)

    detail = pick("detail", "details", "data", "summary")
    entries: tuple[dict[str, Any], ...] = ()
    if isinstance(detail, str):
        try:
            detail = json.loads(detail)
        except ValueError:
            pass  # plain text: shown as it is
    if isinstance(detail, dict):
        entries = tuple(e for e in detail.get("entries") or () if isinstance(e, dict))
        detail = {k: v for k, v in detail.items() if k != "entries"}
    level = pick("level")
    return ConflictRow(
        id=str(pick("id", "conflict_id")), kind=str(pick("kind", "type") or "?"), store_id=str(pick("store_id", "store") or ""),
        subject=str(pick("subject", "key", "member_id", "sku") or ""), level=None if level is None else int(level),
        detail=detail if isinstance(detail, (dict, str)) or detail is None else str(detail),
        entries=entries, status=str(pick("status") or "open"), at=pick("detected_at", "created_at", "at"),
    )  # fmt: skip


def list_open(db: Central) -> list[ConflictRow] | None:
    """Open conflicts, newest first; None while there is no conflicts table."""
    if not table_exists(db, "conflicts"):
        return None
    return [_row(item) for item in sales_conflicts.list_open(db)]


def resolution_actions(kind: str | None = None) -> tuple[str, ...]:
    """What an operator may do about a conflict of ``kind`` (every action the sales area knows if None)."""
    if kind is not None and kind in sales_conflicts.ACTIONS:
        return tuple(sales_conflicts.ACTIONS[kind])
    return tuple(sales_conflicts.RESOLUTIONS)


def resolve(db: Central, conflict_id: str, action: str, note: str, actor: str = "hq-operator") -> Any:
    return sales_conflicts.resolve(db, conflict_id, action, note=note, actor=actor)
