"""The store agent does not load pandas or numpy (issue 19 §5): sqlite_utils imports them whenever they are
installed, and they were about 49 MB of the agent's memory; other commands (and the tests) keep them."""

from __future__ import annotations

import subprocess
import sys

LOADED = (
    "import sys; sys.argv = {argv!r}; import tenpo.cli, tenpo.edge.agent, sqlite_utils.db;"
    " print(sorted(m for m in ('pandas', 'numpy') if sys.modules.get(m) is not None), sqlite_utils.db.pd is None)"
)


def _loaded(argv: list[str]) -> str:
    done = subprocess.run([sys.executable, "-P", "-c", LOADED.format(argv=argv)], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    return done.stdout.strip()


def test_the_store_agent_runs_without_dataframe_libraries() -> None:
    assert _loaded(["tenpo", "edge", "run", "--config", "store.toml"]) == "[] True"


def test_other_commands_import_what_is_installed() -> None:
    assert _loaded(["tenpo", "cloud", "run"]) == "['numpy', 'pandas'] False"
