"""Widgets every monitor screen shares: its header and its footer of key hints."""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer, Header

# Textual's default header icon (⭘, U+2B58) is missing from common monospace fonts, so browsers
# (`tenpo hq --serve`) drew a box; ≡ is in every one of them and reads as "menu" (a click opens the
# command palette).
HEADER_ICON = "≡"


def header() -> Header:
    return Header(show_clock=False, icon=HEADER_ICON)


class KeyHints(Footer):
    """The footer, showing its key hints while the app is not focused too.

    Textual's Footer does not update while the app is blurred, and in a browser tab the app starts
    blurred (textual-serve reports the page's focus), so the footer stayed empty until a click.
    """

    def bindings_changed(self, screen: Screen[Any]) -> None:
        super().bindings_changed(screen)
        if not screen.app.app_focus and self.is_attached and screen is self.screen:
            self.call_after_refresh(self.recompose)
