"""The monitor's command palette (Ctrl+P) and its screenshot for support calls.

The palette lists every action the current screen's keys offer (so a key added to a screen appears
there too), the stores table's sort orders, and the screenshot.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

SCREENSHOT_MODE = 0o600  # a screenshot shows store names and figures: only its owner reads it


def save_screenshot(svg: str, directory: Path, at: float) -> Path:
    """Write ``svg`` as tenpo-hq-YYYYmmdd-HHMMSS.svg (local time; -2, -3 ... if taken in the same second),
    created with mode 0600 (never readable by others, whatever the umask)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("tenpo-hq-%Y%m%d-%H%M%S", time.localtime(at))
    for attempt in range(1, 1000):
        path = directory / (f"{stem}.svg" if attempt == 1 else f"{stem}-{attempt}.svg")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SCREENSHOT_MODE)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, SCREENSHOT_MODE)
            os.write(fd, svg.encode("utf-8"))
        finally:
            os.close(fd)
        return path
    raise FileExistsError(f"{directory}: no free name for a screenshot at {stem}")


def _run(app: App[Any], action: str, node: Any) -> Callable[[], Any]:
    return lambda: app.run_action(action, node)


def screen_commands(app: App[Any], screen: Screen[Any]) -> Iterator[SystemCommand]:
    """One command per key the screen (and the app) offers, named as the footer names it. The screen's
    and the app's own bindings count even when a focused widget takes their key (the stores table
    takes Enter to select a row, which also opens the store)."""
    seen: set[str] = set()
    active = [(a.node, a.binding) for a in screen.active_bindings.values()]
    declared = [(node, b) for node in (screen, app) for b in type(node).BINDINGS if isinstance(b, Binding)]
    for node, binding in (*active, *declared):
        if not binding.description or binding.action in seen:
            continue
        seen.add(binding.action)
        yield SystemCommand(binding.description, f"key {app.get_key_display(binding)}", _run(app, binding.action, node))
