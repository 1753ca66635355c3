"""What each box installs: a store box has no `hq` extra (psycopg, textual-serve) and must not need it;
HQ features that do need it say so in one line; the lock file agrees with pyproject's ranges."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tenpo.cli import main

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
HQ_ONLY = ("psycopg", "textual_serve", "matplotlib")


def hide_hq_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in HQ_ONLY:  # None in sys.modules makes `import name` raise ImportError, as when not installed
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "textual_serve.server", None)


def test_postgresql_without_the_hq_extra_says_what_to_install(monkeypatch, capsys) -> None:
    hide_hq_extra(monkeypatch)
    assert main(["cloud", "status", "--db", "postgresql://tenpo@127.0.0.1:5432/tenpo"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "PostgreSQL" in err and "pip install 'tenpo[hq]'" in err


def test_serving_the_monitor_without_the_hq_extra_says_what_to_install(monkeypatch, capsys) -> None:
    hide_hq_extra(monkeypatch)
    assert main(["hq", "--serve", "--db", "sqlite:///nowhere.db", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "--serve" in err and "pip install 'tenpo[hq]'" in err


def test_every_store_box_module_imports_without_the_hq_extra() -> None:
    script = f"""
import importlib, pkgutil, sys
for name in {HQ_ONLY!r} + ("textual_serve.server",):
    sys.modules[name] = None
import tenpo.edge, tenpo.shared
for package in (tenpo.edge, tenpo.shared):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
from tenpo.cli import build_parser
build_parser(["edge"]).parse_args(["edge", "--help"])
"""
    run = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage: tenpo edge" in run.stdout


def test_the_store_box_dependencies_leave_out_the_hq_extra() -> None:
    base = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["dependencies"]}
    hq = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["optional-dependencies"]["hq"]}
    assert hq == {"psycopg", "textual-serve", "matplotlib", "textual-plotext"}
    assert not base & hq


def test_the_lock_file_pins_every_dependency_within_its_range() -> None:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (run make lock)"
            pins[canonicalize_name(name)] = version
    wanted = PYPROJECT["dependencies"] + [r for group in PYPROJECT["optional-dependencies"].values() for r in group]
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in constraints.txt: run make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]} outside pyproject's {requirement.specifier}: run make lock"
        )
