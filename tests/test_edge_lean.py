"""The tenpo command does not load pandas, nor numpy unless it may draw a chart (issue 19 §5): sqlite_utils
imports them whenever they are installed, and they were about 49 MB of the agent's memory and 0.1-0.4 s CPU of
every command's start; a program importing tenpo as a library (and the tests) keeps them."""

from __future__ import annotations

import subprocess
import sys

LOADED = (
    "import sys; sys.argv = {argv!r}; import tenpo.cli, tenpo.edge.agent, sqlite_utils.db;"
    " print(sorted(m for m in ('pandas', 'numpy') if m in sys.modules), sqlite_utils.db.pd is None)"
)


def _loaded(argv: list[str]) -> str:
    done = subprocess.run([sys.executable, "-P", "-c", LOADED.format(argv=argv)], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    return done.stdout.strip()


def test_the_store_agent_runs_without_dataframe_libraries() -> None:
    assert _loaded(["tenpo", "edge", "run", "--config", "store.toml"]) == "[] True"


def test_commands_that_draw_no_chart_run_without_dataframe_libraries() -> None:
    for argv in (["tenpo", "--help"], ["tenpo", "cloud", "run"], ["tenpo", "edge", "status", "--config", "x.toml"],
                 ["tenpo", "hq", "--db", "sqlite:///x.db"], ["-m", "edge", "clerk", "list"]):  # fmt: skip
        assert _loaded(argv) == "[] True", argv


def test_chart_commands_keep_numpy_for_matplotlib() -> None:
    assert _loaded(["tenpo", "cloud", "members", "quality", "--chart", "q.png"]) == "['numpy'] True"
    assert _loaded(["tenpo", "cloud", "analytics", "rfm", "--chart", "r.png"]) == "['numpy'] True"


def test_a_program_importing_tenpo_keeps_what_is_installed() -> None:
    assert _loaded(["bench/bench_pin.py", "edge", "run"]) == "['numpy', 'pandas'] False"
