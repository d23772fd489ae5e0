"""Import boundaries: one module imports the binding; the library, jobs and engine layers never import Starlette."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sdrest"


def test_only_native_imports_the_binding() -> None:
    importers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if re.search(r"^\s*(import|from)\s+stable_diffusion_cpp\b", path.read_text(), re.M)
    )
    assert importers == ["engine/native.py"]


@pytest.mark.parametrize(("layer", "at_least"), [("library", 8), ("jobs", 9), ("engine", 8)])
def test_inner_layers_import_neither_starlette_nor_the_binding(layer: str, at_least: int) -> None:
    modules = sorted(
        f"sdrest.{layer}.{p.stem}" for p in (PACKAGE / layer).glob("*.py") if p.stem not in ("__init__", "native")
    )
    code = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'stable_diffusion_cpp'))\n"
        "print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    assert len(modules) >= at_least


def test_every_error_class_is_used() -> None:
    """The native error tree holds no class nobody raises or maps to."""
    from sdrest import errors

    source = "\n".join(
        p.read_text() for p in PACKAGE.rglob("*.py") if p.name != "errors.py" or p.parent.name != "sdrest"
    )
    own = (PACKAGE / "errors.py").read_text()
    for name, cls in vars(errors).items():
        if isinstance(cls, type) and issubclass(cls, errors.ApiError) and cls is not errors.ApiError:
            used = re.search(rf"\b{name}\b", source) or len(re.findall(rf"\b{name}\b", own)) > 1
            assert used, f"{name} is never raised"
