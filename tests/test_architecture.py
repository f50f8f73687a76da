"""Layering rules: ``xentropy`` is pure NumPy; the HTTP service depends on it, never the reverse."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
LIBRARY = ROOT / "xentropy"
#: What importing the library must not load: the web stack, the parsers of the service,
#: and Dask (the Dask adapter imports it lazily, on use).
FORBIDDEN = {
    "fastapi", "pydantic", "pydantic_core", "starlette", "uvicorn", "msgspec", "orjson",
    "simdjson", "prometheus_client", "dask", "distributed", "app",
}


def test_importing_xentropy_loads_no_web_framework_or_dask():
    code = (
        "import sys, pkgutil, importlib, xentropy\n"
        "for m in pkgutil.walk_packages(xentropy.__path__, 'xentropy.'):\n"
        "    if m.name != 'xentropy.dask':\n"
        "        importlib.import_module(m.name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r})\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_importing_xentropy_does_not_import_its_command():
    code = "import sys, xentropy; print('xentropy.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_xentropy_imports_only_numpy_and_the_standard_library():
    allowed_third_party = {"numpy"}
    paths = sorted(LIBRARY.rglob("*.py"))
    assert paths
    for path in paths:
        if path.name == "dask.py":  # the adapter: dask is its reason to exist
            allowed = allowed_third_party | {"dask", "distributed"}
        elif path.parent.name == "cli":  # the command: each imported lazily, when used
            allowed = allowed_third_party | {"orjson", "tqdm", "pyarrow", "dask"}
        else:
            allowed = allowed_third_party
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "xentropy":
                continue
            assert top in sys.stdlib_module_names or top in allowed, (
                f"{path.relative_to(ROOT)} imports {name}"
            )


def test_the_service_reaches_the_library_only_through_public_or_declared_modules():
    """Nothing under ``xentropy/`` imports ``app``; ``app`` imports ``xentropy``."""
    for path in LIBRARY.rglob("*.py"):
        assert not any(n.split(".")[0] == "app" for n in _imports(path)), path
    assert any(
        n.split(".")[0] == "xentropy"
        for path in (ROOT / "app").rglob("*.py")
        for n in _imports(path)
    )
