"""The import rules the layering relies on, read from the source (no module is imported).

What fails: any import cycle; ``shared`` importing ``edge``, ``cloud`` or the commands; ``edge`` and
``cloud`` importing each other; a codec reaching serial, bleak, paho, sqlite3 or sqlite_utils; a
module over 500 lines; a module loaded by name, or an import inside a function with no stated reason.

Every ``import`` statement of every module under ``tenpo/``, ``edge/``, ``cloud/`` and ``shared/``
counts, including the ones inside functions: a lazy import still ties two modules together, it only
hides the tie until run time. How an import becomes an edge of the graph:

- ``import a.b.c`` and ``from a.b.c import x`` point at module ``a.b.c``; when ``a.b.c.x`` is itself a
  module (``from pkg import submodule``) the edge points at ``a.b.c.x`` instead, otherwise ``x`` is a
  name defined in ``a/b/c.py`` or ``a/b/c/__init__.py`` and the edge stays on ``a.b.c``.
- Python runs a module's parent packages first, so importing ``a.b.c`` is also an edge to ``a.b``
  and ``a`` (their ``__init__.py``), except the packages the importing module itself lives in: those
  are already running when it runs. So ``a.x`` importing ``a.b.c`` points at ``a.b`` and ``a.b.c``; a
  package that re-exports its submodules is no cycle with them, but an ``__init__.py`` that imports
  back into the importer is.
- Imports under ``if TYPE_CHECKING:`` are left out: they never run, so they cannot form a cycle at
  import time (and the layer rules do not need them either).
- Relative imports are resolved against the importing module's package.

Loading a module by name (``importlib.import_module``, ``__import__``) hides an import from this
graph, so it is allowed only where ``LOADERS_BY_NAME`` says why; the modules ``tenpo.cli`` loads by
name are not edges (it loads them after it has finished importing, so the demo may call its ``main``).

Folders map to packages as installed: ``edge/`` is ``tenpo.edge``, ``cloud/`` is ``tenpo.cloud``,
``shared/`` is ``tenpo.shared``, ``tenpo/`` is ``tenpo``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"tenpo": "tenpo", "edge": "tenpo.edge", "cloud": "tenpo.cloud", "shared": "tenpo.shared"}
MAX_LINES = 500

# Pure codecs: bytes in, values out. They must not reach (even indirectly) a port, a radio, a
# broker or a database, so they stay testable and fast on any machine.
CODECS = (
    "tenpo.edge.rfid.mercury",
    "tenpo.edge.rfid.r2000",
    "tenpo.edge.rfid.ascii_lines",
    "tenpo.edge.rfid.reads",
    "tenpo.edge.rfid.driver",  # the protocol drivers: decoders, commands, regions; the transport owns the port
    "tenpo.edge.rfid.mercury_driver",
    "tenpo.edge.rfid.r2000_driver",
    "tenpo.edge.rfid.ascii_driver",
    "tenpo.edge.rfid.profile",
    "tenpo.shared.epc",
    "tenpo.shared.epc_tables",
    "tenpo.edge.ble.decode",
    "tenpo.edge.ble.advert",
    "tenpo.edge.printer.escpos",  # ESC/POS bytes; edge/printer/port.py owns the serial port
    "tenpo.shared.beacon_id",
)
IO_LIBRARIES = ("serial", "bleak", "paho", "sqlite3", "sqlite_utils")
LOADERS_BY_NAME = {
    "tenpo.cli": "imports only the command group being run: the store agent does not load HQ's modules",
}


@dataclass(frozen=True, slots=True)
class Import:
    target: str  # a module of the project, or the top-level name of an outside library
    line: int


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: Path
    is_package: bool


def module_files(root: Path = ROOT) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for folder, package in FOLDERS.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            name = ".".join((package, *parts))
            modules[name] = Module(name, path, is_package)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except the bodies of ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def resolve_imports(module: Module, tree: ast.AST, known: Mapping[str, Module]) -> list[Import]:
    """The modules (or outside libraries) one module imports, by the rules in this file's docstring."""
    found: list[Import] = []
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno) for alias in node.names)
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            source = ".".join([*base, *([node.module] if node.module else [])])
        else:
            source = node.module or ""
        for alias in node.names:
            candidate = f"{source}.{alias.name}"
            found.append(Import(candidate if candidate in known else source, node.lineno))
    return found


def project_target(name: str, known: Mapping[str, Module]) -> str | None:
    """The project module an imported name lands in (``tenpo.x.y`` may be a name inside ``tenpo.x``)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _packages_of(name: str) -> set[str]:
    """``a.b.c`` -> {``a``, ``a.b``}: the packages Python runs before the module itself."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


@cache
def import_graph() -> dict[str, dict[str, int]]:
    return build_graph(ROOT)


def build_graph(root: Path) -> dict[str, dict[str, int]]:
    """module -> {imported module or outside library: first line that imports it}."""
    known = module_files(root)
    graph: dict[str, dict[str, int]] = {}
    for name, module in known.items():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))
        edges: dict[str, int] = {}
        running = _packages_of(name)
        for imported in resolve_imports(module, tree, known):
            if imported.target == "tenpo" or imported.target.startswith("tenpo."):
                target = project_target(imported.target, known) or imported.target
                targets = [p for p in _packages_of(target) if p in known and p not in running] + [target]
            else:
                targets = [imported.target.split(".")[0]]
            for target in targets:
                if target != name:
                    edges.setdefault(target, imported.line)
        graph[name] = edges
    return graph


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one, as a closed path [a, b, ..., a].

    Pure (Tarjan's algorithm, iterative so a long chain cannot hit the recursion limit); nodes that
    only appear as targets are fine.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    components.append(sorted(component))
    return [_cycle_through(graph, members) for members in components]


def _cycle_through(graph: Mapping[str, Iterable[str]], members: list[str]) -> list[str]:
    """A shortest closed path from the component's first member back to itself, for the message."""
    inside = set(members)
    start = members[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child not in inside:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {members}")  # a component of size > 1 always has one


def _describe(path: list[str]) -> str:
    graph = import_graph()
    steps = [f"{a} -> {b} (line {graph[a][b]})" for a, b in zip(path, path[1:])]
    return "\n    ".join(steps)


def layer(name: str) -> str | None:
    """``shared``, ``edge``, ``cloud``, ``commands`` (the ``tenpo/`` folder) or None for outside libraries."""
    for folder in ("shared", "edge", "cloud"):
        if name == f"tenpo.{folder}" or name.startswith(f"tenpo.{folder}."):
            return folder
    return "commands" if name == "tenpo" or name.startswith("tenpo.") else None


def _violations(source: str, forbidden: Iterable[str]) -> list[str]:
    return [
        f"{module} imports {target} (line {line})"
        for module, edges in sorted(import_graph().items())
        if layer(module) == source
        for target, line in sorted(edges.items())
        if layer(target) in forbidden
    ]


# ------------------------------------------------------------------------------ self-checks


def test_find_cycles_reports_a_synthetic_cycle_and_passes_a_tree() -> None:
    assert find_cycles({"a": ["b"], "b": ["c"], "c": []}) == []
    assert find_cycles({"a": ["b", "x"], "b": ["c"], "c": ["a"], "x": []}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": ["a"]}) == [["a", "a"]]
    two = find_cycles({"a": ["b"], "b": ["a"], "c": ["d"], "d": ["e"], "e": ["c"], "f": ["a"]})
    assert sorted(map(tuple, two)) == [("a", "b", "a"), ("c", "d", "e", "c")]


def test_a_long_chain_does_not_hit_the_recursion_limit() -> None:
    chain = {str(i): [str(i + 1)] for i in range(5000)}
    assert find_cycles(chain) == []
    chain["5000"] = ["0"]
    assert len(find_cycles(chain)[0]) == 5002


def test_resolution_of_imports(tmp_path: Path) -> None:
    (tmp_path / "edge" / "area").mkdir(parents=True)
    for name in ("tenpo", "cloud", "shared"):
        (tmp_path / name).mkdir()
    files = {
        "edge/__init__.py": "",
        "edge/area/__init__.py": "from .model import Thing\n",
        "edge/area/model.py": "Thing = 1\n",
        "edge/area/cli.py": (
            "from typing import TYPE_CHECKING\n"
            "from tenpo.edge import area\n"  # a submodule
            "from tenpo.edge.area import Thing\n"  # a name in area/__init__.py
            "from . import model\n"
            "if TYPE_CHECKING:\n    from tenpo.edge import db\n"
            "def late():\n    import serial.tools\n    from ..db import connect\n"
        ),
        "edge/db.py": "",
    }
    for relative, text in files.items():
        (tmp_path / relative).write_text(text)
    known = module_files(tmp_path)
    cli = known["tenpo.edge.area.cli"]
    targets = {i.target for i in resolve_imports(cli, ast.parse(cli.path.read_text()), known)}
    assert targets == {"typing", "tenpo.edge.area", "tenpo.edge.area.model", "serial.tools", "tenpo.edge.db"}
    graph = build_graph(tmp_path)
    assert set(graph["tenpo.edge.area.cli"]) == {"typing", "tenpo.edge.area", "tenpo.edge.area.model", "serial",
                                                 "tenpo.edge.db"}  # fmt: skip
    assert find_cycles({m: [t for t in e if t in graph] for m, e in graph.items()}) == []


def test_a_cycle_through_a_package_init_is_found(tmp_path: Path) -> None:
    """db imports area.schema, which runs area/__init__.py first; that imports area.store, which imports db."""
    (tmp_path / "edge" / "area").mkdir(parents=True)
    for name in ("tenpo", "cloud", "shared"):
        (tmp_path / name).mkdir()
    files = {
        "edge/__init__.py": "",
        "edge/db.py": "from tenpo.edge.area import schema\n",
        "edge/area/__init__.py": "from .store import save\n",
        "edge/area/schema.py": "",
        "edge/area/store.py": "from tenpo.edge.db import connect\n",
    }
    for relative, text in files.items():
        (tmp_path / relative).write_text(text)
    graph = build_graph(tmp_path)
    cycles = find_cycles({m: [t for t in e if t in graph] for m, e in graph.items()})
    assert cycles == [["tenpo.edge.area", "tenpo.edge.area.store", "tenpo.edge.db", "tenpo.edge.area"]]


# ------------------------------------------------------------------------------ the rules


def test_no_import_cycles() -> None:
    cycles = find_cycles({module: [t for t in edges if t in import_graph()] for module, edges in import_graph().items()})
    assert not cycles, "import cycles (move what both sides need into a module below them):\n  " + "\n  ".join(
        _describe(cycle) for cycle in cycles
    )


def test_shared_imports_neither_edge_nor_cloud_nor_the_commands() -> None:
    assert _violations("shared", ["edge", "cloud", "commands"]) == []


def test_edge_and_cloud_do_not_import_each_other() -> None:
    assert _violations("edge", ["cloud"]) == []
    assert _violations("cloud", ["edge"]) == []


def io_reached(graph: Mapping[str, Iterable[str]], start: str) -> list[str] | None:
    """The import chain from ``start`` to the first I/O library it reaches, or None. Pure."""
    via: dict[str, str] = {start: start}
    todo = [start]
    while todo:
        module = todo.pop(0)
        for target in sorted(graph.get(module, ())):
            if target in IO_LIBRARIES:
                chain = [target, module]
                while chain[-1] != start:
                    chain.append(via[chain[-1]])
                return list(reversed(chain))
            if target in graph and target not in via:
                via[target] = module
                todo.append(target)
    return None


def test_io_reached_follows_imports_to_a_library() -> None:
    graph = {"codec": ["helper", "struct"], "helper": ["sqlite_utils"], "pure": ["struct"]}
    assert io_reached(graph, "codec") == ["codec", "helper", "sqlite_utils"]
    assert io_reached(graph, "pure") is None


@pytest.mark.parametrize("codec", CODECS)
def test_codecs_reach_no_port_radio_broker_or_database(codec: str) -> None:
    graph = import_graph()
    assert codec in graph, f"{codec} is gone: update CODECS"
    chain = io_reached(graph, codec)
    assert chain is None, f"{codec} reaches {chain[-1]} through {' -> '.join(chain)}"


def _loads_by_name(tree: ast.AST) -> list[int]:
    """Lines that import importlib or call ``__import__``/``import_module``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "importlib" for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("importlib"):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in ("__import__", "import_module"):
                lines.append(node.lineno)
    return sorted(lines)


def test_modules_are_imported_by_statements_not_loaded_by_name() -> None:
    found = {
        name: lines
        for name, module in module_files().items()
        if (lines := _loads_by_name(ast.parse(module.path.read_text(encoding="utf-8"))))
    }
    unexplained = {name: lines for name, lines in found.items() if name not in LOADERS_BY_NAME}
    assert unexplained == {}, "import the module (or register the function) instead; the graph cannot see these"
    assert set(LOADERS_BY_NAME) <= set(found), "a loader by name is gone: drop it from LOADERS_BY_NAME"


def test_loading_by_name_is_noticed() -> None:
    tree = ast.parse("import importlib\nfrom importlib import import_module\nm = __import__('x')\nimport_module('y')\n")
    assert _loads_by_name(tree) == [1, 2, 3, 4]


def unexplained_lazy_imports(source: str) -> list[int]:
    """Lines of imports inside functions with no stated reason. A reason is a comment on the import or
    on the line above its run of imports, or a ``try`` that catches ImportError (an optional extra)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def guarded(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
            ):
                return True
        return False

    def commented(node: ast.stmt) -> bool:
        if any("#" in line for line in lines[node.lineno - 1 : node.end_lineno]):
            return True
        above = node.lineno - 2
        while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
            above -= 1
        return above >= 0 and lines[above].strip().startswith("#")

    found = []
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in _import_nodes(function):
                if not (commented(node) or guarded(node)):
                    found.append(node.lineno)
    return sorted(set(found))


def test_lazy_import_reasons_are_recognised() -> None:
    source = (
        "def a():\n    import json\n"  # 2: no reason
        "def b():\n    # textual is slow to load\n    from textual import app\n    from textual import on\n"
        "def c():\n    import rich  # only on a terminal\n"
        "def d():\n    try:\n        import psycopg\n    except ImportError:\n        pass\n"
        "def e():\n    x = 1  # unrelated\n    import csv\n"  # 16: no reason
    )
    assert unexplained_lazy_imports(source) == [2, 16]


def test_imports_inside_functions_say_why() -> None:
    """After the cycles were broken, an import belongs at the top unless loading it late is the point."""
    found = {
        str(m.path.relative_to(ROOT)): lines
        for m in module_files().values()
        if (lines := unexplained_lazy_imports(m.path.read_text(encoding="utf-8")))
    }
    assert found == {}, "move these imports to the top, or say in a comment why they load late"


def test_modules_stay_under_the_size_limit() -> None:
    too_long = {
        str(m.path.relative_to(ROOT)): n
        for m in module_files().values()
        if (n := len(m.path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}, f"split these modules (over {MAX_LINES} lines)"
