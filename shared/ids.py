"""One strict pattern for every id that may reach a file name, an MQTT topic or SQL.

Store ids: letters, digits, ``-`` and ``_`` (1-32), as in the envelope (tenpo.shared.protocol).
Member ids (provisional ``S001-000001``, golden ``G…``), SKUs, receipt, reservation, visit and
shipment ids: a letter or digit, then up to 127 of letters, digits, ``. _ : -``; never ``..`` and
never a slash, so an id cannot climb out of a folder when it becomes part of a file name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from .errors import UserError

STORE_ID_REGEX: Final = r"^[A-Za-z0-9_-]{1,32}$"
# The lookahead refuses "..": the character class alone already refuses "/" and "\".
ID_REGEX: Final = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"

_STORE_ID: Final = re.compile(STORE_ID_REGEX)
_ID: Final = re.compile(ID_REGEX)


def is_store_id(text: str) -> bool:
    return bool(_STORE_ID.fullmatch(text))


def is_id(text: str) -> bool:
    return bool(_ID.fullmatch(text))


def id_file(folder: Path, prefix: str, ident: str, suffix: str) -> Path:
    """``folder/{prefix}{ident}{suffix}``; UserError for an id that is not one or would leave ``folder``."""
    if not is_id(ident):
        raise UserError(f"id {ident!r} is not a valid id (letters, digits, '._:-', no '..'): no file written")
    target = folder / f"{prefix}{ident}{suffix}"
    if target.resolve().parent != folder.resolve():
        raise UserError(f"id {ident!r}: the file name would leave {folder}")
    return target
