"""Import boundaries: one module imports the binding; the model library never imports Starlette or the binding."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sdrest"


def test_only_native_imports_the_binding() -> None:
    importers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if re.search(r"^\s*(import|from)\s+stable_diffusion_cpp\b", path.read_text(), re.M)
    )
    assert importers == ["engine/native.py"]


def test_library_imports_neither_starlette_nor_the_binding() -> None:
    modules = sorted(f"sdrest.library.{p.stem}" for p in (PACKAGE / "library").glob("*.py") if p.stem != "__init__")
    code = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'stable_diffusion_cpp'))\n"
        "print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    assert len(modules) >= 8
