"""What `pip install .` (not editable) puts on a store box: every package, and the `tenpo` command."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"edge": "tenpo.edge", "cloud": "tenpo.cloud", "shared": "tenpo.shared", "tenpo": "tenpo"}


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *relative)))
    assert found == listed


def test_the_wheel_holds_every_module_under_tenpo(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True)  # fmt: skip
    (wheel,) = tmp_path.glob("tenpo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, name in FOLDERS.items():
        for module in (ROOT / folder).rglob("*.py"):
            relative = module.relative_to(ROOT / folder)
            assert "/".join((*name.split("."), *relative.parts)) in names, module
    assert not any(n.startswith(("edge/", "cloud/", "shared/")) for n in names), "nothing outside tenpo/ at the top"
