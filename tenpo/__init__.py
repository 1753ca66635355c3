"""Tenpo: in-store edge appliance with cloud sync."""

import sys as _sys

__version__ = "0.1.0"

# Issue 19 §5: the store agent runs without pandas and numpy. sqlite_utils imports them whenever they are
# installed (a development virtualenv has them for the analytics tests); the agent never uses them, and they
# were about 49 MB of its memory and a second of its start. None in sys.modules makes their import fail,
# which sqlite_utils expects (it then leaves its DataFrame support off).
if _sys.argv[1:3] == ["edge", "run"]:
    for _name in ("pandas", "numpy"):
        _sys.modules.setdefault(_name, None)  # type: ignore[arg-type]
