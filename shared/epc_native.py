"""The compiled build of ``tenpo.shared.epc``, when there is a current one (docs/rfid.md, "Decoding speed
and the compiled decoder").

scripts/build_epc_native.py compiles a copy of shared/epc.py with mypyc into the virtualenv as
``tenpo_epc_native`` and records the SHA-256 of the source it was made from. It counts only while that
is the SHA-256 of shared/epc.py as it is now, so an edited codec runs as pure Python until the next build.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import ModuleType
from typing import Final

SOURCE: Final = Path(__file__).with_name("epc.py")


def source_digest() -> str:
    """SHA-256 of shared/epc.py: what a compiled build must have been made from."""
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def compiled_module() -> ModuleType | None:
    """The compiled build of shared/epc.py, if installed and made from it as it is now."""
    try:
        import tenpo_epc_native  # type: ignore[import-not-found]  # built by setup.sh, not a package
    except ImportError:
        return None
    native: ModuleType = tenpo_epc_native
    return native if getattr(native, "COMPILED_FROM", None) == source_digest() else None
