"""What each monitor view looks like at 120×40 and 80×24 (pytest-textual-snapshot; SVGs in
tests/__snapshots__). Data and clock are fixed (tenpo.cloud.hq.sim), so the pictures never drift.
Update after an intended change with `pytest tests/test_hq_snapshots.py --snapshot-update`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenpo.cloud.db import Central
from tenpo.cloud.hq import sim
from tenpo.cloud.hq.app import HqApp
from tenpo.cloud.hq.config import MonitorConfig
from tenpo.cloud.hq.data import HqData
from tenpo.cloud.hq.sim import FIXED_NOW
from tests.support.operators import TEST_ADMIN

SIZES = [(120, 40), (80, 24)]


@pytest.fixture(autouse=True)
def tokyo_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Detail views show local times: the pictures are taken in one zone, whatever the machine's."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make_app(tmp_path: Path) -> HqApp:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    db = Central(url)
    stores = sim.seed_stores(db, 14)
    sim.add_dead_letter(db, "S002", sim.events_topic("S002"), "bad signature", sim.signed_batch(stores[1], 61, 2, FIXED_NOW),
                        FIXED_NOW - 95)  # fmt: skip
    sim.add_dead_letter(db, "S005", "tenpo/v1/stores/S005/up/events", "event 12 (stock.adjusted): delta: must be an integer",
                        b'{"sku": "A1", "delta": "1"}', FIXED_NOW - 3600, event_seq=12)  # fmt: skip
    sim.add_dead_letter(db, None, "tenpo/v1/stores/??/up/events", "topic is not a store upstream topic", b"\x00\x01",
                        FIXED_NOW - 7200)  # fmt: skip
    sim.add_points_conflict(db, "S001-0007", ("S001", "S002"), FIXED_NOW - 30)
    db.close()
    # An interval far longer than a test: the first refresh is the only one, nothing moves under the camera.
    return HqApp(HqData(url, MonitorConfig(interval_s=3600), clock=lambda: FIXED_NOW), operator=TEST_ADMIN)


async def settle(pilot: Any, *keys: str) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    for key in keys:
        await pilot.press(key)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("keys", [(), ("enter",), ("d",), ("c",), ("g",)],
                         ids=["stores", "store_detail", "dead_letters", "conflicts", "charts"])
def test_view(snap_compare, tmp_path: Path, size: tuple[int, int], keys: tuple[str, ...]) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=size, run_before=lambda pilot: settle(pilot, *keys))
