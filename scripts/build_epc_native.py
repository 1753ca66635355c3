"""Compile the EPC codec (shared/epc.py) with mypyc into this virtualenv as ``tenpo_epc_native``.

Optional: tenpo.shared.epc uses the compiled module only when it was built from the current source
(a SHA-256 recorded in it), and runs as pure Python otherwise. Needs mypy (mypyc), a C compiler and
Python's headers; scripts/setup.sh runs this. The build happens in a temporary folder and only the
extension modules land in site-packages, so nothing compiled ever sits in the repository.
Usage: .venv/bin/python scripts/build_epc_native.py [--if-stale]
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "shared" / "epc.py"
NAME = "tenpo_epc_native"


def installed_digest() -> str | None:
    """The source digest the installed build records, asked of a fresh interpreter (None: no build)."""
    probe = f"import {NAME}; print({NAME}.COMPILED_FROM)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def build() -> None:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    target = Path(sysconfig.get_paths()["platlib"])
    with tempfile.TemporaryDirectory(prefix="tenpo-epc-native-") as tmp:
        work = Path(tmp)
        # mypy type-checks the copy against the modules it imports, so it gets them in their package
        package = work / "tenpo" / "shared"
        package.mkdir(parents=True)
        (work / "tenpo" / "__init__.py").write_text("")
        (package / "__init__.py").write_text("")
        for module in ("epc_tables.py", "epc_encode.py", "epc_native.py"):
            shutil.copy(ROOT / "shared" / module, package / module)
        (work / f"{NAME}.py").write_text(SOURCE.read_text() + f'\nCOMPILED_FROM = "{digest}"\n')
        subprocess.run([sys.executable, "-m", "mypyc", f"{NAME}.py"], cwd=work, check=True,
                       stdout=subprocess.DEVNULL)
        built = sorted(work.glob(f"{NAME}*.so"))
        if not built:
            raise SystemExit("build_epc_native: mypyc produced no extension module")
        for old in target.glob(f"{NAME}*.so"):
            old.unlink()
        for module in built:
            shutil.copy(module, target / module.name)
    if installed_digest() != digest:
        raise SystemExit("build_epc_native: the installed module does not import")
    print(f"build_epc_native: {NAME} built from shared/epc.py ({digest[:12]}) into {target}")


def main() -> None:
    if "--if-stale" in sys.argv[1:] and installed_digest() == hashlib.sha256(SOURCE.read_bytes()).hexdigest():
        return
    build()


if __name__ == "__main__":
    main()
