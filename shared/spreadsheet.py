"""CSV cells a spreadsheet would run: ``=HYPERLINK(…)``, ``+cmd|' /C calc'!A0``, ``@SUM(1)``.

OWASP's CSV injection advice: a text cell that begins with ``= + - @``, a tab or a carriage return
is written with a leading single quote, so Excel, LibreOffice and Google Sheets show it as text.
Numbers are written as numbers (a points balance of -50 stays -50).
"""

from __future__ import annotations

from typing import Final

FORMULA_LEADS: Final = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """``value`` for a CSV writer: a formula-leading string gets a leading ``'``; anything else as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_LEADS):
        return "'" + value
    return value


def hides_formula(raw: str) -> bool:
    """True when ``raw`` starts with a tab, CR or other blanks that, once trimmed, leave a formula.

    An importer must not trim such a value (``"\\t=x"`` would become ``"=x"``); it keeps it raw and
    flags the field. A phone number like ``" +81 90-1234-5678"`` is not a formula."""
    rest = raw.lstrip()
    if rest == raw or not rest.startswith(FORMULA_LEADS[:4]):
        return False
    if rest[0] in "+-" and rest[1:].replace(" ", "").replace("-", "").replace("(", "").replace(")", "").isdigit():
        return False
    return True
