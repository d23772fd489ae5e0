"""The names the API accepts are the binding's: samplers, schedulers, preview methods, conversion types."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sdrest.library.convert import CONVERT_TYPES
from sdrest.schemas import PREVIEW_METHODS, SAMPLERS, SCHEDULERS


def _binding_maps() -> dict[str, list[str]]:
    code = (
        "import json\nfrom stable_diffusion_cpp import stable_diffusion as s\n"
        "print(json.dumps({k: list(getattr(s, k)) for k in "
        "('SAMPLE_METHOD_MAP', 'SCHEDULER_MAP', 'PREVIEW_MAP', 'GGML_TYPE_MAP')}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.binding
def test_names_match_the_binding() -> None:
    maps = _binding_maps()
    assert set(SAMPLERS) == set(maps["SAMPLE_METHOD_MAP"]) - {"default", "sample_method_count"}
    assert set(SCHEDULERS) == set(maps["SCHEDULER_MAP"]) - {"default", "scheduler_count"}
    assert set(PREVIEW_METHODS) == set(maps["PREVIEW_MAP"]) - {"none", "preview_count"}
    assert set(CONVERT_TYPES) <= set(maps["GGML_TYPE_MAP"])
