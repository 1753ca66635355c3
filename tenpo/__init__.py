"""Tenpo: in-store edge appliance with cloud sync."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Issue 19 §5: the tenpo command runs without pandas, and without numpy unless it may draw a chart.
# sqlite_utils imports both whenever they are installed (a development virtualenv has them for the analytics
# tests); tenpo never uses pandas, only matplotlib needs numpy. They were about 49 MB of the store agent's
# memory and 0.1-0.4 s CPU of every command's start. A finder first on sys.meta_path makes their import fail,
# which sqlite_utils expects (it then leaves its DataFrame support off). Not None in sys.modules: psycopg
# takes a "numpy" key there for a loaded numpy and fails dumping an int. Only the command line is affected
# (the console script, `python -m tenpo`), never a program that imports tenpo as a library.
# The commands that draw with matplotlib (--chart) are under `cloud analytics` and `cloud members quality`:
# any such word on the line keeps numpy (a spare import is harmless, a missing one is not).
_CHART_WORDS = {"analytics", "quality"}


class _Without:
    """Refuses to import the given top-level packages, as if they were not installed."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (the tenpo command runs without it)", name=name)


if _sys.argv[:1] == ["-m"] or _os.path.basename(_sys.argv[0] if _sys.argv else "") == "tenpo":
    _sys.meta_path.insert(
        0, _Without(frozenset({"pandas"} if _CHART_WORDS.intersection(_sys.argv[1:]) else {"pandas", "numpy"}))
    )
