"""Bulk work without the cycle collector: a pause around one bounded batch (a snapshot chunk).

Building thousands of rows allocates tens of thousands of short-lived dicts and Structs, freed by
reference counting; the cycle collector would still walk them every 700 allocations (a fifth of a
bootstrap's time). The pause is restored on exit, and a caller that found it off leaves it off.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with automatic garbage collection off; keep the block to one bounded batch."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
