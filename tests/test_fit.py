"""Memory-aware defaults: the options chosen so a model fits the free memory of the device it runs on (cheapest first,
never overriding one that was set), the exact keywords the worker then passes, a refusal with the numbers when nothing
fits, and `POST /api/v1/estimate`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from sdrest.engine.calls import generate_image_kwargs, load_options
from sdrest.jobs import fit
from tests.conftest import Library
from tests.fakes import FakeEngine
from tests.test_api import make_client, wait_for

GIB = 1024**3
SD1 = {"model": "sd1", "prompt": "a cat", "width": 512, "height": 512, "steps": 1}


class GpuEngine(FakeEngine):
    """A fake engine whose probe reports one GPU with `free` bytes free."""

    def __init__(self, free: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.free = int(free)

    def probe(self) -> dict[str, Any]:
        cpu = {"name": "CPU", "description": "the CPU", "memory_free": 0, "memory_total": 0}
        gpu = {"name": "CUDA0", "description": "a small GPU", "memory_free": self.free, "memory_total": 4 * GIB}
        return {**super().probe(), "backend": "CUDA", "devices": [cpu, gpu]}


@pytest.fixture
def models(library: Library) -> Library:
    library.add("sd1-full", "checkpoints/sd1.safetensors")
    library.add("sd1-sdxs", "checkpoints/sdxs.safetensors")
    return library


def _run(models: Library, data_dir: Path, engine: FakeEngine, body: dict) -> tuple[Any, dict]:
    with make_client(models, data_dir, engine) as client:
        response = client.post("/api/v1/generate", json=body)
        assert response.status_code == 202, response.text
        job = wait_for(client, response.json()["id"])
    return engine.specs[-1], job


def _refusal(models: Library, data_dir: Path, engine: FakeEngine, body: dict) -> dict:
    with make_client(models, data_dir, engine) as client:
        response = client.post("/api/v1/generate", json=body)
        assert response.status_code == 422, response.text
        assert client.get("/api/v1/jobs").json()["total"] == 0
    error: dict = response.json()["error"]
    assert error["field"] == "$.model"
    assert error["details"]["need_bytes"] > error["details"]["available_bytes"]
    return error


def test_a_checkpoint_splits_into_its_parts(models: Library) -> None:
    # The fixture is SD 1.x in f16: CLIP 235 MB, UNet 1640 MB, VAE 160 MB (sd.cpp's own accounting).
    parts = fit.weights({"model_path": str(models.root / "checkpoints/sd1.safetensors")})
    assert parts.text / parts.total == pytest.approx(235 / 2035, abs=0.01)
    assert parts.vae / parts.total == pytest.approx(160 / 2035, abs=0.01)
    assert parts.diffusion / parts.total == pytest.approx(1640 / 2035, abs=0.01)


def test_enough_memory_chooses_nothing(models: Library, data_dir: Path) -> None:
    spec, job = _run(models, data_dir, GpuEngine(24 * GIB), SD1)
    assert load_options(spec) == {}
    assert "vae_tiling" not in generate_image_kwargs(spec)
    assert not any("to fit" in w for w in job.get("warnings", []))


def test_a_small_gpu_gets_the_cheapest_options_that_fit(models: Library, data_dir: Path) -> None:
    # 512² SD 1.x needs about 4.3 GiB as is (the H200 measured a 4.3 GiB peak): with 3 GiB free, VAE tiling and the
    # text encoder on the CPU are enough, and nothing slower is chosen.
    spec, job = _run(models, data_dir, GpuEngine(3 * GIB), SD1)
    assert load_options(spec) == {"keep_clip_on_cpu": True}
    assert generate_image_kwargs(spec)["vae_tiling"] is True
    assert any(
        w.startswith("chose keep_clip_on_cpu, vae_tiling to fit") and "of CUDA0 memory free" in w
        for w in job.get("warnings", [])
    ), job["warnings"]
    # With 2.7 GiB it takes flash attention and the weights in RAM as well.
    spec, _ = _run(models, data_dir, GpuEngine(2.7 * GIB), SD1)
    assert load_options(spec) == {"keep_clip_on_cpu": True, "flash_attn": True, "offload_params_to_cpu": True}


def test_options_that_were_set_are_never_overridden(models: Library, data_dir: Path) -> None:
    body = {**SD1, "vae_tiling": False, "engine": {"keep_clip_on_cpu": False}}
    # Untiled, the VAE decoder's 1.7 GiB buffer stays: only the weights in RAM make it fit 4 GiB.
    spec, _ = _run(models, data_dir, GpuEngine(4 * GIB), body)
    assert load_options(spec) == {"keep_clip_on_cpu": False, "flash_attn": True, "offload_params_to_cpu": True}
    assert "vae_tiling" not in generate_image_kwargs(spec)


def test_a_gpu_too_small_even_with_every_option_is_refused_with_numbers(models: Library, data_dir: Path) -> None:
    error = _refusal(models, data_dir, GpuEngine(2 * GIB), SD1)
    assert "needs about 2.3 GiB of CUDA0 memory even with" in error["message"]
    assert "and 2.0 GiB is free" in error["message"]
    assert error["details"]["device"] == "CUDA0" and error["details"]["available_bytes"] == 2 * GIB


def test_on_a_cpu_a_large_image_takes_flash_attention(models: Library, data_dir: Path) -> None:
    # SD 1.x's attention buffer grows with the square of the pixels: about 140 GB at 2048² without flash attention
    # (images over 1024² are decoded in tiles anyway).
    spec, job = _run(models, data_dir, FakeEngine(), {**SD1, "width": 2048, "height": 2048})
    assert load_options(spec) == {"flash_attn": True}
    assert generate_image_kwargs(spec)["vae_tiling"] is True
    assert any(
        w.startswith("chose flash_attn to fit") and w.endswith("of RAM free") for w in job.get("warnings", [])
    ), job["warnings"]


def test_too_little_ram_is_refused_with_numbers(
    models: Library, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sdrest import host

    monkeypatch.setattr(host, "memory", lambda: {"total": 4 * GIB, "available": 2 * GIB})
    error = _refusal(models, data_dir, FakeEngine(), SD1)
    assert "of RAM even with" in error["message"] and "2.0 GiB is free" in error["message"]
    assert error["details"]["device"] == "RAM"
    # Turned off, the same request is queued (and sd.cpp would find out for itself).
    with make_client(models, data_dir, FakeEngine(), fit_memory=False) as client:
        assert client.post("/api/v1/generate", json=SD1).status_code == 202


def test_estimate_says_whether_it_fits_and_about_how_long(
    models: Library, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"model": "sdxs", "prompt": "a cat", "width": 64, "height": 64, "steps": 1}
    with make_client(models, data_dir, FakeEngine(step_seconds=0.02)) as client:
        first = client.post("/api/v1/estimate", json=body).json()
        assert first["fits"] is True and first["model"] == "checkpoints/sdxs.safetensors"
        assert first["seconds"] == {"load": None, "generate": None, "total": None, "jobs": 0}
        assert (
            first["memory"]["device"] == "RAM" and first["memory"]["need_bytes"] <= first["memory"]["available_bytes"]
        )
        assert client.get("/api/v1/jobs").json()["total"] == 0  # nothing was queued
        for _ in range(2):
            job = wait_for(client, client.post("/api/v1/generate", json=body).json()["id"])
            assert job["status"] == "completed"
        rate = job["timings"]["generate"] / (1 * 64 * 64 / 1e6)
        later = client.post("/api/v1/estimate", json={**body, "steps": 2, "width": 128, "height": 128}).json()
        assert later["seconds"]["jobs"] == 2
        assert later["seconds"]["generate"] == pytest.approx(rate * 2 * 128 * 128 / 1e6, rel=0.3)
        assert later["seconds"]["load"] == 0.0  # the model is loaded
        bad = client.post("/api/v1/estimate?kind=paint", json=body)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "kind"
        from sdrest import host

        monkeypatch.setattr(host, "memory", lambda: {"total": 4 * GIB, "available": GIB // 4})
        refused = client.post("/api/v1/estimate", json=body).json()
        assert refused["fits"] is False and "GiB of RAM" in refused["message"]
        assert refused["memory"]["need_bytes"] > refused["memory"]["available_bytes"] == GIB // 4


class CudaWithoutDevices(FakeEngine):
    """A CUDA build whose binding cannot list ggml's devices (older bindings)."""

    def probe(self) -> dict[str, Any]:
        return {**super().probe(), "backend": "CUDA", "devices": []}


def test_without_ggml_devices_the_vendor_tool_tells_the_gpu_memory(
    models: Library, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = tmp_path / "bin" / "nvidia-smi"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho '0, NVIDIA GeForce RTX 3050, 3072, 4096'\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}:{os.environ['PATH']}")
    spec, job = _run(models, data_dir, CudaWithoutDevices(), SD1)
    assert load_options(spec) == {"keep_clip_on_cpu": True}  # as with ggml's 3 GiB free above
    assert any("of CUDA0 memory free" in w for w in job.get("warnings", [])), job
    with make_client(models, data_dir, CudaWithoutDevices()) as client:
        devices = client.get("/api/v1/system").json()["devices"]
    assert devices == [{"name": "CUDA0", "description": "NVIDIA GeForce RTX 3050", "memory_free": 3 * GIB,
                        "memory_total": 4 * GIB, "source": "nvidia-smi"}]  # fmt: skip


def test_seconds_are_a_fixed_part_plus_a_part_per_unit_of_work() -> None:
    from sdrest.jobs.estimate import _predict

    # Text encoding and the VAE cost the same at every step count: 1 s fixed, 2 s per unit.
    assert _predict([(1.0, 3.0), (2.0, 5.0), (2.0, 5.0)], 4.0) == pytest.approx(9.0)
    assert _predict([(1.0, 3.0)], 4.0) == pytest.approx(12.0)  # one size seen: proportional
    assert _predict([(1.0, 5.0), (2.0, 3.0)], 4.0) == pytest.approx(4 * 3.25)  # noise, no slope: proportional
