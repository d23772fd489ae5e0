"""The generation modes over a fake engine: what admission refuses (a 422 naming the field), and the exact arguments
each kind hands the binding, including the modes no random-weight fixture can run (Wan video, PhotoMaker, Qwen edit).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from sdrest.engine.calls import generate_image_kwargs, generate_video_kwargs, load_options, upscale_passes
from sdrest.specs import Img2Img, Txt2Img, Upscale, Video
from tests.conftest import Library
from tests.fakes import FakeEngine
from tests.fixtures import synthetic
from tests.test_api import make_client, wait_for


def _png(width: int = 64, height: int = 64, mode: str = "RGB") -> str:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def models(library: Library) -> Library:
    def place(case: str, name: str) -> None:
        library.link(synthetic.build(synthetic.get_case(case)), name)

    library.add("sd1-sdxs", "checkpoints/sdxs.safetensors")
    library.add("flux-tiny-diffusion-model", "diffusion_models/flux-tiny.safetensors")
    library.add("vae-flux-16ch", "vae/ae.safetensors")
    library.add("clip-l-text-encoder", "text_encoders/clip_l.safetensors")
    library.add("controlnet-sd1", "controlnet/canny-sd15.safetensors")
    library.add("realesrgan-x4-1block", "esrgan/x4.safetensors")
    library.add("taesd", "taesd/taesd.safetensors")
    place("sdxl-base", "checkpoints/sdxl.safetensors")
    place("photomaker-v2", "photomaker/photomaker-v2.safetensors")
    place("wan21-t2v-1.3b", "diffusion_models/wan-t2v.safetensors")
    place("wan21-vae", "vae/wan_2.1_vae.safetensors")
    place("umt5-xxl", "text_encoders/umt5_xxl.safetensors")
    place("qwen-image-edit", "diffusion_models/qwen_image_edit.safetensors")
    place("qwen-image-vae", "vae/qwen_image_vae.safetensors")
    place("qwen25-vl-7b", "text_encoders/qwen_2.5_vl_7b.safetensors")
    return library


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(autouse=True)
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The synthetic files are sparse and up to 40 GB: hashing them is not what these tests are about."""
    from sdrest.library import catalog

    monkeypatch.setattr(catalog, "sha256_file", lambda path, progress=None: "0" * 64)


@pytest.fixture
def client(models: Library, data_dir: Path, engine: FakeEngine) -> Iterator[TestClient]:
    # The synthetic files stand in for models of up to 54 GB, more than a test machine holds: the memory fit (tested
    # on its own in test_fit.py) would refuse them here, as it should on such a machine.
    with make_client(models, data_dir, engine, fit_memory=False) as client:
        yield client


SDXS = {"model": "sdxs", "prompt": "a cat", "width": 64, "height": 64, "steps": 1, "seed": 5}


@pytest.mark.parametrize(
    ("route", "body", "field", "says"),
    [
        ("generate", {**SDXS, "mask": _png()}, "$.mask", "needs an init_image"),
        ("generate", {**SDXS, "init_image": "not base64!"}, "$.init_image", "base64"),
        ("generate", {**SDXS, "init_image": base64.b64encode(b"GIF89a...").decode()}, "$.init_image", "PNG, JPEG"),
        ("generate", {**SDXS, "init_image": {"url": "http://127.0.0.1:1/x.png"}}, "$.init_image", "URLs is off"),
        ("generate", {**SDXS, "init_image": {"output": "../../etc/passwd"}}, "$.init_image", ""),
        ("generate", {**SDXS, "outpaint": {"left": 64}}, "$.outpaint", "init_image"),
        ("generate", {**SDXS, "init_image": _png(), "outpaint": {}}, "$.outpaint", "at least one side"),
        (
            "generate",
            {**SDXS, "model": "flux-tiny", "control": {"model": "canny-sd15", "image": _png()}},
            "$.control.model",
            "is for sd1 models",
        ),
        ("generate", {**SDXS, "control": {"model": "x4", "image": _png()}}, "$.control.model", "is a upscaler"),
        ("generate", {**SDXS, "photomaker": {"id_images": [_png()]}}, "$.photomaker", "SDXL"),
        ("generate", {**SDXS, "ref_images": [_png()]}, "$.ref_images", "ignores reference images"),
        ("generate", {**SDXS, "upscale": {"model": "taesd"}}, "$.upscale.model", "not a upscaler"),
        ("generate", {**SDXS, "hires": {"scale": 2, "upscaler": "nope"}}, "$.hires.upscaler", "no upscaler named"),
        ("generate", {**SDXS, "hires": {"scale": 2, "width": 128}}, "$.hires.scale", "not both"),
        ("generate", {**SDXS, "width": 96}, "$.width", "multiple of 64"),
        ("generate", {**SDXS, "model": "wan-t2v"}, "$.model", "video model"),
        ("video", {"prompt": "waves", "model": "sdxs"}, "$.model", "makes images, not video"),
        ("video", {"prompt": "waves", "model": "wan-t2v", "end_image": _png()}, "$.end_image", "first frame"),
        ("upscale", {"image": _png(), "model": "sdxs"}, "$.model", "not a upscaler"),
        ("upscale", {"image": _png(), "model": "x4", "factor": 9}, "$.factor", ""),
    ],  # fmt: skip
)
def test_what_cannot_work_is_refused_before_it_is_queued(
    client: TestClient, engine: FakeEngine, route: str, body: dict, field: str, says: str
) -> None:
    response = client.post(f"/api/v1/{route}", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field, error
    assert says in error["message"], error
    assert engine.ran == []


def _spec(client: TestClient, engine: FakeEngine, route: str, body: dict):  # type: ignore[no-untyped-def]
    response = client.post(f"/api/v1/{route}", json=body)
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"])
    assert job["status"] == "completed", job
    return engine.specs[-1], job


def test_img2img_and_inpainting_arguments(client: TestClient, engine: FakeEngine, models: Library) -> None:
    spec, job = _spec(client, engine, "generate", {**SDXS, "init_image": _png(32, 32), "strength": 0.4})
    assert isinstance(spec, Img2Img) and job["warnings"] == ["$.init_image was 32x32; resized to 64x64"]
    kwargs = generate_image_kwargs(spec)
    assert kwargs["init_image"] == spec.init_image and kwargs["strength"] == 0.4 and "mask_image" not in kwargs
    assert Image.open(spec.init_image).size == (64, 64)
    assert (
        Path(spec.init_image).parent
        == Path(client.app.state.services.settings.data_dir) / "outputs" / job["id"] / "inputs"
    )  # type: ignore[attr-defined]
    spec, _ = _spec(client, engine, "generate", {**SDXS, "init_image": _png(), "mask": _png(mode="L"), "mask_blur": 0})
    assert generate_image_kwargs(spec)["mask_image"] == spec.mask


def test_controlnet_hires_upscale_taesd_and_tuning_arguments(client: TestClient, engine: FakeEngine) -> None:
    body = {
        **SDXS,
        "taesd": "taesd",
        "control": {"model": "canny-sd15", "image": _png(), "strength": 0.6, "preprocess": "canny"},
        "hires": {"scale": 2, "upscaler": "x4", "steps": 3, "denoising_strength": 0.4},
        "upscale": {"model": "x4", "factor": 2},
        "clip_skip": 2,
        "eta": 0.5,
        "flow_shift": 3.0,
        "slg": {"scale": 2.5},
        "cache": {"mode": "easycache", "threshold": 0.3},
        "vae_tiling": True,
    }
    spec, _ = _spec(client, engine, "generate", body)
    kwargs = generate_image_kwargs(spec)
    assert {k: kwargs[k] for k in ("control_strength", "canny", "clip_skip", "eta", "flow_shift")} == {
        "control_strength": 0.6, "canny": True, "clip_skip": 2, "eta": 0.5, "flow_shift": 3.0
    }  # fmt: skip
    assert kwargs["control_image"] == spec.control.image
    assert (kwargs["hires"], kwargs["hires_upscaler"], kwargs["hires_width"], kwargs["hires_height"]) == (
        True, "model", 128, 128
    )  # fmt: skip
    assert kwargs["hires_path"].endswith("esrgan/x4.safetensors") and kwargs["hires_steps"] == 3
    assert (kwargs["slg_scale"], kwargs["skip_layers"], kwargs["cache_mode"], kwargs["cache_reuse_threshold"]) == (
        2.5, [7, 8, 9], "easycache", 0.3
    )  # fmt: skip
    assert kwargs["vae_tiling"] is True
    plan = spec.model.plan
    assert plan["control_net_path"].endswith("canny-sd15.safetensors")
    assert plan["upscaler_path"].endswith("x4.safetensors") and plan["taesd_path"].endswith("taesd.safetensors")
    assert spec.upscale.factor == 2 and spec.upscale.model_scale == 4


def test_vae_tiling_is_automatic_for_large_images(client: TestClient, engine: FakeEngine) -> None:
    small, _ = _spec(client, engine, "generate", SDXS)
    large, _ = _spec(client, engine, "generate", {**SDXS, "width": 1088, "height": 1024})
    assert (small.vae_tiling, large.vae_tiling) == (False, True)


def test_photomaker_arguments_on_sdxl(client: TestClient, engine: FakeEngine) -> None:
    body = {"model": "sdxl", "prompt": "a man img", "width": 64, "height": 64, "steps": 1,
            "photomaker": {"id_images": [_png(), _png(48, 48)], "style_strength": 30}}  # fmt: skip
    spec, _ = _spec(client, engine, "generate", body)
    kwargs = generate_image_kwargs(spec)
    assert kwargs["pm_style_strength"] == 30 and kwargs["pm_id_images"] == spec.photomaker.id_images
    assert len(kwargs["pm_id_images"]) == 2 and all(Path(p).is_file() for p in kwargs["pm_id_images"])
    assert spec.model.plan["photo_maker_path"].endswith("photomaker-v2.safetensors")


def test_qwen_image_edit_reference_arguments(client: TestClient, engine: FakeEngine) -> None:
    body = {"model": "qwen_image_edit", "prompt": "make it snow", "width": 64, "height": 64, "steps": 1,
            "ref_images": [_png(), _png()]}  # fmt: skip
    spec, job = _spec(client, engine, "generate", body)
    kwargs = generate_image_kwargs(spec)
    assert isinstance(spec, Txt2Img) and kwargs["ref_images"] == spec.ref_images and len(spec.ref_images) == 2
    assert spec.model.plan["llm_path"].endswith("qwen_2.5_vl_7b.safetensors")
    assert job["params"]["ref_images"] == 2


def test_a_refused_video_leaves_no_stored_inputs(client: TestClient, data_dir: Path) -> None:
    body = {"model": "wan-t2v", "prompt": "waves <lora:nowhere:1>", "width": 64, "height": 64, "init_image": _png()}
    response = client.post("/api/v1/video", json=body)
    assert response.status_code == 422 and "nowhere" in response.json()["error"]["message"]
    outputs = data_dir / "outputs"
    assert not outputs.exists() or list(outputs.iterdir()) == []


def test_video_arguments_for_wan(client: TestClient, engine: FakeEngine) -> None:
    body = {"model": "wan-t2v", "prompt": "waves", "width": 64, "height": 80, "frames": 9, "fps": 8, "steps": 2,
            "cfg_scale": 5.0, "seed": 9, "flow_shift": 3.0, "init_image": _png(), "strength": 0.8}  # fmt: skip
    spec, job = _spec(client, engine, "video", body)
    assert isinstance(spec, Video) and job["kind"] == "video"
    assert generate_video_kwargs(spec) == {
        "prompt": "waves", "negative_prompt": "", "width": 64, "height": 80, "cfg_scale": 5.0, "sample_steps": 2,
        "sample_method": "euler", "scheduler": "default", "seed": 9, "video_frames": 9, "strength": 0.8,
        "flow_shift": 3.0, "init_image": spec.init_image,
    }  # fmt: skip
    assert spec.model.plan["t5xxl_path"].endswith("umt5_xxl.safetensors")
    (output,) = job["outputs"]
    assert output["filename"] == "video-9.webp" and output["media_type"] == "image/webp"
    frames = Image.open(io.BytesIO(client.get(output["url"]).content))
    assert frames.n_frames == 1  # the fake engine sends one frame per batch image


def test_standalone_upscale_arguments(client: TestClient, engine: FakeEngine) -> None:
    spec, job = _spec(client, engine, "upscale", {"image": _png(16, 16), "model": "x4", "factor": 3, "tile": 64})
    assert isinstance(spec, Upscale) and (spec.factor, spec.model_scale, spec.tile) == (3.0, 4, 64)
    assert spec.model.plan == {"upscaler_path": spec.model.path}
    assert load_options(spec) == {"upscale_tile_size": 64}
    assert (upscale_passes(4, 3), upscale_passes(4, 4), upscale_passes(4, 8), upscale_passes(2, 8)) == (1, 1, 2, 3)
    assert job["kind"] == "upscale"


def test_every_kind_is_listed_cancelled_and_followed(client: TestClient, engine: FakeEngine) -> None:
    engine.slow_seconds = 0.3
    job = client.post("/api/v1/video", json={"model": "wan-t2v", "prompt": "slow waves", "steps": 20}).json()
    assert engine.started.wait(5)
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    kinds = {j["kind"] for j in client.get("/api/v1/jobs").json()["jobs"]}
    assert kinds == {"video"}


def test_a_form_field_nested_under_a_plain_value_is_refused(client: TestClient) -> None:
    # Found by the fuzzer: `a` given as a plain value, then `a.b` inside it, was a 500.
    form = {"prompt": "a cat", "preview": "null", "preview.interval": "2"}
    response = client.post("/api/v1/generate", data=form, files={"unused": ("x.txt", b"")})
    assert response.status_code == 422 and response.json()["error"]["field"] == "$.preview"
    listed = {"prompt": "a cat", "photomaker": '{"id_images": 5}', "photomaker.id_images": _png()}
    response = client.post("/api/v1/generate", data=listed, files={"unused": ("x.txt", b"")})
    assert response.status_code == 422 and response.json()["error"]["field"] == "$.photomaker.id_images"
