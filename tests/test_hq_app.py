"""The monitor as an operator sees it: App.run_test() against a real database (and a real broker and
store agent for presence)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text

from tenpo.cloud.admin import add_store
from tenpo.cloud.db import Central
from tenpo.cloud.hq import sim
from tenpo.cloud.hq.app import HqApp, PresenceSeen
from tenpo.cloud.hq.config import MonitorConfig, Thresholds
from tenpo.cloud.hq.data import HqData
from tenpo.cloud.hq.presence import Presence
from tenpo.cloud.hq.sim import FIXED_NOW
from tenpo.sandbox import Mosquitto, provision_store, store_process
from tenpo.shared import crypto
from tenpo.shared.mqtt import parse_broker_url
from tests.support.operators import TEST_ADMIN


async def until(pilot: Any, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> None:
    """Let the app run until ``predicate`` holds (``timeout`` only stops a broken test from hanging)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.01)


def row(app: HqApp, store_id: str) -> list[Text]:
    table = app.stores_screen.query_one("#stores")
    return list(table.get_row(store_id))


def is_red(app: HqApp, store_id: str) -> bool:
    screen = app.stores_screen
    if screen is None or store_id not in screen._shown:
        return False
    cells = row(app, store_id)
    return cells[2].plain == "OFF" and all("red" in str(cell.style) for cell in cells)


def seeded(tmp_path: Path, count: int, **config: Any) -> tuple[str, HqApp]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    db = Central(url)
    sim.seed_stores(db, count)
    db.close()
    monitor = MonitorConfig(**config) if config else MonitorConfig()
    return url, HqApp(HqData(url, monitor, clock=lambda: FIXED_NOW), operator=TEST_ADMIN)


async def test_a_store_killed_with_sigkill_turns_red_from_its_will_without_a_database_refresh(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """How fast it turns red is measured by bench/bench_hq.py; here: the Will alone repaints the row."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    config_path = provision_store(tmp_path / "S001", "S001", broker.url, url)
    agent = store_process(config_path).start()
    app = HqApp(HqData(url, MonitorConfig(interval_s=3600)), parse_broker_url(broker.url),
                operator=TEST_ADMIN)  # one refresh only
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.stores_screen.refreshes > 0, what="the first refresh")
            await until(pilot, lambda: "S001" in app.presence and app.presence["S001"].online, 20, "the store's birth")
            await until(pilot, lambda: row(app, "S001")[2].plain == "on", what="the birth on the row")
            assert not is_red(app, "S001")
            refreshes = app.stores_screen.refreshes
            agent.kill()  # no goodbye: the broker publishes the store's Will
            await until(pilot, lambda: is_red(app, "S001"), 10, "the row to turn red")
            assert app.stores_screen.refreshes == refreshes, "the Will repainted the row, not a database refresh"
            assert not app.presence["S001"].online
            assert app.stores_screen._order[0] == "S001", "a store that dropped moves to the top"
    finally:
        agent.kill()


async def test_a_backlog_above_the_threshold_is_highlighted(tmp_path: Path) -> None:
    url, app = seeded(tmp_path, 3, thresholds=Thresholds(backlog_above=100), interval_s=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.stores_screen.refreshes > 0, what="the first refresh")
        assert row(app, "S001")[5].style == ""
        db = Central(url)
        db.execute("UPDATE stores SET backlog = 101 WHERE store_id = 'S001'")
        db.close()
        await until(pilot, lambda: row(app, "S001")[5].plain == "101", what="the new backlog")
        assert all(str(cell.style) == "bold yellow" for cell in row(app, "S001"))
        assert app.stores_screen.views["S001"].reasons == ("backlog 101",)
        assert row(app, "S002")[5].style == "", "a store under the threshold stays plain"


async def test_a_dead_letter_is_retried_from_the_dead_letters_view_and_applied(tmp_path: Path) -> None:
    url, app = seeded(tmp_path, 2)
    db = Central(url)
    s3 = sim.SimStore("S003", sim._seed_key(3), "stream-003")
    letter = sim.add_dead_letter(db, "S003", sim.events_topic("S003"), "unknown store 'S003' (not registered)",
                                 sim.signed_batch(s3, 1, 3, FIXED_NOW), FIXED_NOW - 60)  # fmt: skip
    add_store(db, "S003", crypto.public_key_pem(s3.key), "Store 3")  # the fix the operator made
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.stores_screen.refreshes > 0, what="the first refresh")
        await pilot.press("d")
        screen = app.screen
        await until(pilot, lambda: getattr(screen, "letters", None), what="the dead letters")
        assert [d.id for d in screen.letters] == [letter]
        await pilot.press("r")
        await until(pilot, lambda: screen.letters == [], what="the letter to leave the open list")
    assert db.scalar("SELECT last_applied_seq FROM stores WHERE store_id = 'S003'") == 3
    assert db.scalar("SELECT status FROM dead_letters WHERE id = ?", (letter,)) == "retried"
    assert db.scalar("SELECT count(*) FROM audit_log WHERE action = 'dead_letter.retried'") == 1
    db.close()


async def test_a_dead_letter_is_discarded_with_a_note(tmp_path: Path) -> None:
    url, app = seeded(tmp_path, 1)
    db = Central(url)
    letter = sim.add_dead_letter(db, "S001", "tenpo/v1/stores/S001/up/status", "status body schema", b"{}", FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("d")
        screen = app.screen
        await until(pilot, lambda: getattr(screen, "letters", None), what="the dead letters")
        await pilot.press("x")
        await pilot.press(*"firmware test", "enter")
        await until(pilot, lambda: screen.letters == [], what="the letter to be discarded")
    assert db.one("SELECT status, note FROM dead_letters WHERE id = ?", (letter,)) == ("discarded", "firmware test")
    db.close()


async def test_clicking_a_header_sorts_by_that_column(tmp_path: Path) -> None:
    _, app = seeded(tmp_path, 12)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.stores_screen.refreshes > 0, what="the first refresh")
        table = app.stores_screen.query_one("#stores")
        assert table.ordered_rows[0].key.value in ("S003", "S010"), "offline stores first by default"
        await pilot.click("#stores", offset=(56, 0))  # the Backlog header
        backlogs = [app.stores_screen.views[r.key.value].backlog for r in table.ordered_rows]
        assert backlogs == sorted(backlogs, reverse=True)
        await pilot.press("a")
        assert table.ordered_rows[0].key.value in ("S003", "S010")


async def test_60_stores_follow_presence_flapping_and_key_presses_while_refreshing(tmp_path: Path) -> None:
    """Nothing is dropped under load; how long each step takes is measured by bench/bench_hq.py."""
    _, app = seeded(tmp_path, 60, interval_s=0.05)  # twenty database refreshes a second
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.stores_screen
        await until(pilot, lambda: screen.refreshes > 0, what="the first refresh")
        assert len(screen._shown) == 60
        start = screen.refreshes
        for i in range(20):
            for n in range(1, 51):  # 50 stores' presence flapping at once
                app.post_message(PresenceSeen(f"S{n:03d}", Presence(birth_bdseq=i, death_bdseq=i - (n + i) % 2)))
            before = screen.selected_store()
            await pilot.press("down")
            assert screen.selected_store() != before, "every key press is handled (the cursor follows its store)"
        await until(pilot, lambda: screen.refreshes >= start + 5, what="refreshes to keep coming")
        # The last round (i = 19) left even-numbered stores online and odd-numbered ones offline.
        links = {f"S{n:03d}": row(app, f"S{n:03d}")[2].plain for n in range(1, 51)}
        assert links == {f"S{n:03d}": "on" if n % 2 == 0 else "OFF" for n in range(1, 51)}


async def test_a_points_conflict_is_listed_with_both_sides_and_resolved(tmp_path: Path) -> None:
    url, app = seeded(tmp_path, 2)
    db = Central(url)
    sim.add_points_conflict(db, "S001-0007", ("S001", "S002"), FIXED_NOW - 30)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("c")
        screen = app.screen
        await until(pilot, lambda: screen.rows, what="the conflict")
        (conflict,) = screen.rows
        assert conflict.kind == "points-negative" and conflict.level == -500
        # Which entries count as "both sides" is the sales area's rule; the view shows what it lists.
        assert conflict.entries and all(e["delta"] == -500 for e in conflict.entries)
        shown = str(screen.query_one("#entries").render())
        assert conflict.entries[0]["ref"] in shown and "−500 pts redemption" in shown
        assert "{" not in shown and str(int(conflict.entries[0]["applied_at"])) not in shown, "no raw JSON, no epochs"
        assert "write-off — add a points adjustment" in shown and "accept — record the decision" in shown
        await pilot.press("r")
        await until(pilot, lambda: app.screen is not screen, what="the resolve dialog")
        await pilot.press("down", "tab")  # write-off is first, accept second; then the note
        await pilot.press(*"two tills offline", "enter")
        await until(pilot, lambda: screen.rows == [], what="the conflict to be resolved")
    assert db.one("SELECT status, action, note FROM conflicts") == ("resolved", "accept", "two tills offline")
    db.close()
