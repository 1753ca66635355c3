"""Readable text for what the monitor's detail views show: local times with ages, conflict details
and ledger entries, inspection summaries, and what each conflict action does. Pure functions.

No raw JSON and no epoch numbers reach the screen: a value the view does not know is shown as
"key value" pairs, an unreadable one as a short preview.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from tenpo.cloud.hq.model import format_age

# What an operator's choice does, shown next to the choice (the sales area performs it).
ACTION_HELP = {
    "write-off": "add a points adjustment bringing the balance back to 0 (the points spent twice are forgiven)",
    "adjust": "add a stock correction bringing on-hand back to 0 (book the shortfall; count the shelf first)",
    "accept": "record the decision and add no entry; a new conflict opens only if it gets worse than now",
}
SUMMARY_LABELS = (("received_posted", "received"), ("received", "received"), ("missing", "missing"),
                  ("unexpected", "unexpected"), ("wrong_store", "wrong store"))  # fmt: skip
TIME_KEYS = ("at", "applied_at", "detected_at", "created_at", "finished_at", "completed_at", "started_at", "received_at")


def local_time(at: float | None, now: float) -> str:
    """``14:03:12, 2m ago`` today; ``2026-11-29 14:03, 1d ago`` on another day (this machine's zone)."""
    if at is None:
        return "-"
    when, today = time.localtime(at), time.localtime(now)
    same_day = (when.tm_year, when.tm_yday) == (today.tm_year, today.tm_yday)
    clock = time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", when)
    if at > now:
        return f"{clock}, in {format_age(at - now)}"
    return f"{clock}, {format_age(now - at)} ago"


def signed(value: int, unit: str = "") -> str:
    return f"{value:+,}{unit}".replace("-", "−")


def pairs(values: Mapping[str, Any], now: float) -> str:
    """Fallback for a mapping the view does not know: ``key value · key value``, times as local times."""
    shown = []
    for key, value in values.items():
        if isinstance(value, (dict, list)):
            continue
        text = local_time(float(value), now) if key in TIME_KEYS and isinstance(value, (int, float)) else value
        shown.append(f"{key.replace('_', ' ')} {text}")
    return " · ".join(shown)


def conflict_detail(kind: str, detail: Mapping[str, Any] | str | None, now: float) -> str:
    if not isinstance(detail, Mapping):
        return "" if detail is None else " ".join(str(detail).split())
    if "balance" in detail and "member_id" in detail:
        return f"member {detail['member_id']}: balance {signed(int(detail['balance']), ' pts')}"
    if "on_hand" in detail and "sku" in detail:
        return f"store {detail.get('store_id', '?')} sku {detail['sku']}: on hand {signed(int(detail['on_hand']))}"
    return pairs(detail, now)


def conflict_entry(entry: Mapping[str, Any], now: float) -> str:
    """One ledger entry of a conflict: which store wrote what, when HQ applied it, what the store knew."""
    unit = " pts" if "kind" in entry else ""
    what = entry.get("kind") or entry.get("reason") or "entry"
    text = f"{entry.get('store_id', '?')} event {entry.get('store_seq', '?')}: {signed(int(entry.get('delta', 0)), unit)} {what}"
    if entry.get("ref"):
        text += f" ({entry['ref']})"
    if entry.get("applied_at") is not None:
        text += f" · applied {local_time(float(entry['applied_at']), now)}"
    if "cursor" in entry:
        cursor = entry.get("cursor")
        text += " · the store had read " + ("no change yet" if cursor is None else f"up to change {cursor}")
    if "visible_seq" in entry:
        seq = entry.get("visible_seq")
        text += "; not yet sent to stores" if seq is None else f"; sent to stores in change {seq}"
    return text


def action_choice(action: str) -> str:
    return f"{action} — {ACTION_HELP[action]}" if action in ACTION_HELP else action


def inspection_summary(raw: Any) -> str:
    """An inspection's JSON summary as counts (received 12 · missing 1 ...)."""
    try:
        summary = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except ValueError:
        return " ".join(str(raw).split())[:80]
    if not isinstance(summary, Mapping):
        return str(summary)
    shown, used = [], set()
    for key, label in SUMMARY_LABELS:
        if key in summary and label not in used and isinstance(summary[key], int):
            shown.append(f"{label} {summary[key]}")
            used.add(label)
    return " · ".join(shown) or pairs(summary, 0.0)
