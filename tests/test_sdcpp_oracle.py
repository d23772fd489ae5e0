"""The expected answers in the synthetic fixture catalogue are stable-diffusion.cpp's own.

For every checkpoint / diffusion-model case the real binding, in a child process, must name exactly the version the
case expects; a few cheap companion files are loaded for real to show sd.cpp finds no unknown, missing or
misshapen tensor in them; malformed files must make sd.cpp name no version.
"""

from __future__ import annotations

import signal

import pytest

from tests.fixtures import synthetic
from tests.fixtures.sdcpp_probe import sdcpp_load_log, sdcpp_version

pytestmark = pytest.mark.binding

DIFFUSION = [c for c in synthetic.CASES if c.load_as is not None]


@pytest.mark.parametrize("case", DIFFUSION, ids=lambda c: c.name)
def test_sdcpp_names_the_expected_version(case: synthetic.SyntheticCase) -> None:
    path = synthetic.build(case)
    assert case.load_as is not None
    assert sdcpp_version(path, case.load_as) == case.sd_version


def _clean(log_lines: list[str]) -> list[str]:
    return [line for line in log_lines if "unknown tensor" in line or "wrong shape" in line or "not in model" in line]


# (main model, companion parameter, companion case): small enough to load completely in a few seconds.
COMPANIONS = [
    ("sd15", "taesd_path", "taesd"),
    ("sd15", "vae_path", "vae-ft-mse"),
    ("sd15", "control_net_path", "controlnet-sd15-canny"),
]


@pytest.mark.parametrize(("model", "param", "companion"), COMPANIONS, ids=[c[2] for c in COMPANIONS])
def test_companion_loads_without_tensor_complaints(model: str, param: str, companion: str) -> None:
    main = synthetic.build(synthetic.get_case(model))
    extra = synthetic.build(synthetic.get_case(companion))
    result = sdcpp_load_log({"model_path": main, param: extra}, stop_at=None, timeout=120, memory_limit=0, n_threads=2)
    assert result.loaded, result.log[-2000:]
    assert _clean(result.log.splitlines()) == []


UPSCALERS = [c for c in synthetic.CASES if c.role == "upscaler"]


@pytest.mark.parametrize("case", UPSCALERS, ids=lambda c: c.name)
def test_upscaler_scale_and_depth_are_what_sdcpp_infers(case: synthetic.SyntheticCase) -> None:
    path = synthetic.build(case)
    result = sdcpp_load_log({"upscaler_path": path}, stop_at=None, timeout=60, memory_limit=0)
    expected = f"esrgan model loaded with scale={case.details['scale']}, num_block={case.details['blocks']}"
    assert result.lines(expected), result.log[-2000:]
    assert _clean(result.log.splitlines()) == []


@pytest.mark.parametrize("key", sorted(synthetic.broken_files()))
def test_broken_file_has_no_version(key: str) -> None:
    path = synthetic.broken_files()[key]
    result = sdcpp_load_log({"model_path": path}, timeout=60)
    assert result.version is None
    if key == "wrong_types":
        # nlohmann::json throws on the string shape and nothing catches it: the whole process aborts.
        assert result.returncode == -signal.SIGABRT
    else:
        assert result.returncode == 0 and not result.loaded
