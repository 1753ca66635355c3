"""The monitor's command palette, its screenshot key, and the selected row keeping its colours."""

from __future__ import annotations

import stat
from pathlib import Path

from tenpo.cloud.hq.app import HqApp, StoresScreen
from tenpo.cloud.hq.data import HqData
from tenpo.cloud.hq.model import COLUMNS
from tenpo.cloud.hq.screens import DeadLettersScreen
from tests.support.operators import TEST_ADMIN
from tests.test_hq_app import seeded, until


async def test_the_palette_lists_every_key_and_sort_and_runs_them(tmp_path: Path) -> None:
    _, app = seeded(tmp_path, 12)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.stores_screen
        await until(pilot, lambda: screen.refreshes > 0, what="the first refresh")
        titles = {c.title for c in app.get_system_commands(screen)}
        keys = {b.description for b in (*StoresScreen.BINDINGS, *HqApp.BINDINGS)}
        assert keys <= titles, f"palette lacks {keys - titles}"
        assert {f"Sort by {label}" for _, label, _ in COLUMNS} <= titles

        await pilot.press("ctrl+p", *"Sort by Backlog", "enter")
        await until(pilot, lambda: screen.sort_column == "backlog", what="the sort chosen in the palette")
        table = screen.query_one("#stores")
        backlogs = [screen.views[r.key.value].backlog or 0 for r in table.ordered_rows]
        assert backlogs == sorted(backlogs, reverse=True)

        await pilot.press("ctrl+p", *"Dead letters", "enter")
        await until(pilot, lambda: isinstance(app.screen, DeadLettersScreen), what="the dead letters view")
        assert "Retry" in {c.title for c in app.get_system_commands(app.screen)}, "the palette follows the screen"


async def test_the_screenshot_key_saves_an_svg_only_its_owner_can_read(tmp_path: Path) -> None:
    url, first = seeded(tmp_path, 3)
    first.data.close()
    app = HqApp(HqData(url, first.config, clock=first.clock), screenshot_dir=tmp_path / "shots", operator=TEST_ADMIN)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.stores_screen.refreshes > 0, what="the first refresh")
        await pilot.press("s")
        await until(pilot, lambda: app.last_screenshot is not None, what="the screenshot")
        await pilot.press("s")  # the same second: a second file, not an overwrite
        await until(pilot, lambda: len(list((tmp_path / "shots").iterdir())) == 2, what="the second screenshot")
    shot = app.last_screenshot
    assert shot is not None and shot.suffix == ".svg" and shot.parent == tmp_path / "shots"
    assert stat.S_IMODE(shot.stat().st_mode) == 0o600
    text = shot.read_text()
    assert text.startswith("<svg") and "Backlog" in text


async def test_the_selected_row_keeps_its_red_offline_state(tmp_path: Path) -> None:
    _, app = seeded(tmp_path, 12)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.stores_screen
        await until(pilot, lambda: screen.refreshes > 0, what="the first refresh")
        table = screen.query_one("#stores")
        table.focus()
        offline = next(i for i, r in enumerate(table.ordered_rows) if screen.views[r.key.value].level == "offline")
        other = offline + 1 if offline == 0 else 0
        table.move_cursor(row=other)
        await pilot.pause()
        plain = [str(s.style) for s in table.render_line(offline + 1) if s.text.strip()]  # +1: the header line
        table.move_cursor(row=offline)
        await pilot.pause()
        selected = [str(s.style) for s in table.render_line(offline + 1) if s.text.strip()]
    assert all("red" in style for style in plain)
    assert all("red" in style for style in selected), f"the cursor hid the red state: {selected[:2]}"
    assert selected != plain, "the cursor still shows where it is"
