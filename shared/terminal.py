"""Text from customers and stores reaches terminals: control characters are shown, never obeyed.

A member name holding ``ESC ] 0 ; … BEL`` retitles the window, ``ESC [ 2 J`` clears the screen, a C1
``CSI`` (U+009B) does the same on some terminals, and bidi overrides (U+202A-202E, U+2066-2069)
reorder what a clerk reads. ``safe_text`` writes each such character as a visible ``\\uXXXX`` escape:
readable by a person, and still valid inside a JSON string, so the same guard can sit on stdout
under text and JSON alike (tenpo.cli.main installs ``SafeStream`` on stdout and stderr).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Final, TextIO, cast

# C0 controls but LF (and TAB and the CR of a CRLF in multi-line output), DEL, C1, bidi embeddings/isolates.
_SINGLE_LINE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_MULTI_LINE: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]|\r(?!\n)")


def _visible(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def safe_text(text: str, *, multiline: bool = False) -> str:
    """``text`` with every control character, escape and bidi override shown as ``\\uXXXX``.

    ``multiline`` keeps line breaks (LF, CRLF) and tabs: for whole lines of output; a single value
    (a name in a table cell) keeps none."""
    return (_MULTI_LINE if multiline else _SINGLE_LINE).sub(_visible, text)


def has_unsafe(text: str) -> bool:
    return _SINGLE_LINE.search(text) is not None


class SafeStream:
    """A text stream that passes every write through ``safe_text(multiline=True)``.

    ``raw`` is the stream underneath, for the few writes whose escapes the program made itself
    (the doctor's colours). A CR at the end of one write stays unseen until the next write shows
    whether an LF follows it."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw
        self._held_cr = False

    def write(self, text: str) -> int:
        written = len(text)
        if self._held_cr:
            text = "\r" + text
            self._held_cr = False
        if text.endswith("\r"):
            text, self._held_cr = text[:-1], True
        self.raw.write(safe_text(text, multiline=True))
        return written

    def flush(self) -> None:
        if self._held_cr:
            self.raw.write(safe_text("\r"))
            self._held_cr = False
        self.raw.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer...
        return getattr(self.raw, name)


def guarded(stream: TextIO) -> TextIO:
    """``stream`` behind a SafeStream (once: a guarded stream is returned as it is)."""
    return stream if isinstance(stream, SafeStream) else cast(TextIO, SafeStream(stream))


def unguarded(stream: TextIO) -> TextIO:
    """The stream under a SafeStream, for output whose escapes the program makes itself (rich progress bars,
    the doctor's colours); any other stream as it is."""
    return stream.raw if isinstance(stream, SafeStream) else stream


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout, through the guard (json leaves DEL, C1 and bidi overrides as they are)."""
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str), file=guarded(sys.stdout))
