"""What each clerk screen looks like at 80×24, and some at 60×20 (pytest-textual-snapshot; SVGs in
tests/__snapshots__).

Data, ids, clock and time zone are fixed so the pictures never drift. Full-width Japanese names sit in
the same columns as Latin ones (Rich measures cells, not characters). Update after an intended change
with `pytest tests/test_clerk_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input

from tenpo.edge import db as edge_db
from tests.test_clerk_support import FIXED_NOW, MANAGER, PIN, TEA, UMBRELLA, make_app, make_store, settle


@pytest.fixture(autouse=True)
def tokyo_time(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def seeded(tmp_path: Path) -> Any:
    config = make_store(tmp_path / "S001")
    db = edge_db.connect(config.database)
    verdict = {"store": "S001", "shipment_id": "SHP-0001", "matched": ["A", "B", "C"], "missing": ["D"], "unexpected": [],
               "wrong_store": [], "gtins": [{"gtin": "04901085089583", "expected": 3, "received": 3, "sku": "TEA-500"},
                                            {"gtin": "04560000000029", "expected": 1, "received": 0, "sku": "UMBRELLA"}],
               "expected_units": 4}  # fmt: skip
    with edge_db.transaction(db) as conn:
        conn.execute("INSERT INTO remote_stock(store_id, sku, on_hand, as_of, version) VALUES ('S002', 'UMBRELLA', 30, ?, 1)",
                     (FIXED_NOW - 600,))  # fmt: skip
        conn.executemany("INSERT INTO ble_visits(visit_id, member_id, arrived_at, left_at) VALUES (?, ?, ?, ?)",
                         [("V1", "M-0003", FIXED_NOW - 1800, FIXED_NOW - 900), ("V2", "M-0001", FIXED_NOW - 300, None),
                          ("V3", "M-0002", FIXED_NOW - 60, None)])  # fmt: skip
        conn.execute(
            "INSERT INTO inspections(inspection_id, shipment_id, status, opened_at, closed_at, reads, tags, verdict, created_at)"
            " VALUES ('S001-I000001', 'SHP-0001', 'pending', ?, ?, 40, 4, ?, ?)",
            (FIXED_NOW - 120, FIXED_NOW - 100, json.dumps(verdict), FIXED_NOW - 100),
        )
    db.conn.close()
    return make_app(config, clock=lambda: FIXED_NOW)


def steps(*keys: str) -> Any:
    async def run(pilot: Any) -> None:
        await settle(pilot)
        if keys and keys[0] == "signin":
            await pilot.press(*MANAGER, "enter", *PIN, "enter")
            await settle(pilot)
            rest = keys[1:]
        else:
            rest = keys
        for group in rest:  # a group of keys, then let the workers finish
            await pilot.press(*group)
            await settle(pilot)
        # A text cursor blinks every 0.5 s: on a busy machine the picture could catch it either way.
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False  # shown, steadily
        await pilot.pause()

    return run


SCREENS: dict[str, tuple[Any, ...]] = {
    "sign_in": (),
    "home": ("signin",),
    "members": ("signin", ("f3",), ("サ",)),
    "profile": ("signin", ("f3",), tuple("C100"), ("down", "enter")),
    "checkout": ("signin", ("f4",), (*TEA, "enter", *TEA, "enter", *UMBRELLA, "enter")),
    "stock": ("signin", ("f5",), tuple(UMBRELLA)),
    "dock": ("signin", ("f6",)),
    "arrivals": ("signin", ("f7",)),
}


@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(snap_compare, tmp_path: Path, screen: str) -> None:
    assert snap_compare(seeded(tmp_path), terminal_size=(80, 24), run_before=steps(*SCREENS[screen]))


SMALL = {  # the smallest supported size (docs/clerk.md): the amount to collect, the status line and the footer
    "checkout": SCREENS["checkout"],
    "refund": ("signin", ("f4",), (*UMBRELLA, "enter", "f10"), ("enter",), ("enter",), ("escape",), ("ctrl+r",), ("1", "enter"),
               ("plus",)),
}  # fmt: skip


@pytest.mark.parametrize("screen", list(SMALL))
def test_small_screen(snap_compare, tmp_path: Path, screen: str) -> None:
    assert snap_compare(seeded(tmp_path), terminal_size=(60, 20), run_before=steps(*SMALL[screen]))
