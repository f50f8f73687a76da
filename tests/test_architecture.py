"""Layering rules: the core is pure NumPy; the HTTP layer depends on it, never the reverse."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).parents[1] / "app"


def test_importing_the_core_loads_no_web_framework():
    code = (
        "import sys, app.core.losses, app.core.reductions, app.core.calibration, "
        "app.core.divergences\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'fastapi', 'pydantic', 'pydantic_core', 'starlette', 'msgspec', 'orjson', 'uvicorn'})\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_only_numpy_and_the_standard_library():
    allowed_third_party = {"numpy"}
    for path in (APP / "core").glob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "app":
                assert name.startswith("app.core"), f"{path.name} imports {name}"
                continue
            assert top in sys.stdlib_module_names or top in allowed_third_party, (
                f"{path.name} imports {name}"
            )
