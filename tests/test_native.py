"""Real loads through the binding, in child processes: the fixture layouts load with the plans the library makes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from sdrest.engine import oneshot
from sdrest.engine.errors import TaskFailed
from sdrest.library.catalog import Catalog
from sdrest.library.plan import make_plan
from tests.conftest import Library

pytestmark = pytest.mark.binding
GENERATE_ONCE = "tests.native_calls:generate_once"

_FAST = {"prompt": "a lovely cat", "width": 64, "height": 64, "sample_steps": 1, "seed": 42}


def _generate(library: Library, data_dir: Path, name: str, **params: object) -> list[bytes]:
    catalog = Catalog(library.root, data_dir / "library.sqlite3")
    entries = catalog.scan()
    plan = make_plan(catalog.get(name), entries)
    return oneshot.run(GENERATE_ONCE, plan.args, {**_FAST, **params}, {"n_threads": 2})


def _size(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


def test_sd1_full_checkpoint_generates_deterministically(library: Library, data_dir: Path) -> None:
    library.add_weights("sd1-full", "checkpoints/sd15.safetensors")
    first = _generate(library, data_dir, "sd15")
    assert [_size(png) for png in first] == [(64, 64)]
    assert _generate(library, data_dir, "sd15") == first
    assert _generate(library, data_dir, "sd15", seed=43) != first


def test_sdxs_checkpoint(library: Library, data_dir: Path) -> None:
    library.add_weights("sd1-sdxs", "checkpoints/sdxs.safetensors")
    assert [_size(p) for p in _generate(library, data_dir, "sdxs", width=128, height=64)] == [(128, 64)]


def test_tiny_flux_with_companions_found_in_the_library(library: Library, data_dir: Path) -> None:
    library.add_weights("flux-tiny-diffusion-model", "diffusion_models/flux-tiny.safetensors")
    library.add_weights("vae-flux-16ch", "vae/ae.safetensors")
    library.add_weights("clip-l-text-encoder", "text_encoders/clip_l.safetensors")
    pngs = _generate(library, data_dir, "flux-tiny", sample_steps=2, cfg_scale=1.0, batch_count=2)
    assert [_size(p) for p in pngs] == [(64, 64), (64, 64)]


def test_failed_load_is_an_error_not_a_crash(library: Library, data_dir: Path) -> None:
    library.add_weights("vae-sd1-dec32", "vae/sd.safetensors")
    path = str(library.root / "vae/sd.safetensors")
    with pytest.raises(TaskFailed, match="could not load the model"):
        oneshot.run(GENERATE_ONCE, {"model_path": path}, _FAST, {"n_threads": 2})


def test_convert_sd1_to_q8_0_loads_and_generates(capsys, library: Library, data_dir: Path) -> None:
    from sdrest.cli import main

    library.add_weights("sd1-full", "checkpoints/sd15.safetensors")
    args = ["--models-dir", str(library.root), "--data-dir", str(data_dir)]
    assert main(["convert", "sd15", "--type", "q8_0", *args]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(library.root / "checkpoints/sd15-q8_0.gguf")
    catalog = Catalog(library.root, data_dir / "library.sqlite3")
    catalog.scan()
    converted = catalog.get("sd15-q8_0")
    assert (converted.role, converted.architecture, converted.format) == ("checkpoint", "sd1", "gguf")
    assert converted.details["quantization"] == "q8_0"
    pngs = _generate(library, data_dir, "sd15-q8_0")
    assert [_size(p) for p in pngs] == [(64, 64)]
    assert not list(library.root.rglob(".*partial"))
