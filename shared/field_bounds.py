"""How long a text field from outside may be (issue 14: long fields bounded on input).

The catalogue (tenpo.shared.events) bounds what crosses the wire: ``Field`` 256 characters, ``Word``
64, ``Id`` 128. Inputs that feed it are bounded here first, so an over-long value is handled where it
enters, with a clear answer, instead of failing later inside a transaction:

- customer data (member lists, orders): the record is kept, the field is not used and is flagged,
  with the raw value kept for review up to RAW_KEPT_CHARS;
- ids and names that key something (a source id, a column name, a config name): refused, naming the
  field, its length and the limit.
"""

from __future__ import annotations

MAX_FIELD_CHARS = 256
"""A member's name, e-mail, address, a product name: tenpo.shared.events.Field."""

MAX_WORD_CHARS = 64
"""Reasons, kinds, custom field names: tenpo.shared.events.Word."""

MAX_ID_CHARS = 128
"""Ids: tenpo.shared.events.Id."""

RAW_KEPT_CHARS = 1024
"""How much of an over-long customer value is kept (flagged) for someone to review."""

MAX_CSV_FIELD_CHARS = 16 * 1024 * 1024
"""The csv module's per-field limit for imports (its default, 128 KiB, rejects the whole row)."""


def too_long(value: str | None, limit: int = MAX_FIELD_CHARS) -> str | None:
    """The reason a value is too long, or None when it fits."""
    if value is None or len(value) <= limit:
        return None
    return f"{len(value)} characters, more than {limit}: not used; the first {RAW_KEPT_CHARS} kept for review"


def kept(value: str) -> str:
    """What is kept of an over-long value."""
    return value[:RAW_KEPT_CHARS]


def refuse_long(value: str, what: str, limit: int) -> str:
    """``value`` if it fits, else ValueError naming ``what``, the length and the limit (not the value)."""
    if len(value) > limit:
        raise ValueError(f"{what}: {len(value)} characters, at most {limit}")
    return value
