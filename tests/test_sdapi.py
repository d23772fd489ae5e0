"""The AUTOMATIC1111 API with the real `webuiapi` client and the request sequences of Open WebUI, SillyTavern and
LibreChat, over a live server on a fake engine."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import webuiapi
from PIL import Image

from sdrest.app import create_app
from sdrest.images import parse_infotext
from sdrest.settings import load_settings
from sdrest.specs import Img2Img, Load, Txt2Img
from tests.conftest import Library
from tests.fakes import FakeEngine
from tests.live_server import live_server


@pytest.fixture
def models(library: Library) -> Library:
    library.add("sd1-sdxs", "checkpoints/sdxs.safetensors")
    library.add("flux-tiny-diffusion-model", "diffusion_models/flux-tiny.safetensors")
    library.add("vae-flux-16ch", "vae/ae.safetensors")
    library.add("clip-l-text-encoder", "text_encoders/clip_l.safetensors")
    library.add("realesrgan-x4-1block", "esrgan/RealESRGAN_x4.safetensors")
    return library


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def base(models: Library, data_dir: Path, engine: FakeEngine) -> Iterator[str]:
    settings = load_settings({"models_dir": models.root, "data_dir": data_dir}, env={})
    with live_server(create_app(settings, engine=engine)) as url:  # type: ignore[arg-type]
        yield url


@pytest.fixture
def api(base: str) -> webuiapi.WebUIApi:
    host, port = base.removeprefix("http://").split(":")
    client = webuiapi.WebUIApi(host=host, port=int(port))
    client.util_set_model("checkpoints/sdxs.safetensors")
    return client


def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_txt2img_with_webuiapi(api: webuiapi.WebUIApi, engine: FakeEngine) -> None:
    result = api.txt2img(prompt="a cat", width=64, height=64, steps=3, seed=5, cfg_scale=6,
                         sampler_name="DPM++ 2M Karras", batch_size=2, n_iter=1)  # fmt: skip
    assert [i.size for i in result.images] == [(64, 64), (64, 64)]
    assert result.info["all_seeds"] == [5, 6] and result.info["sampler_name"] == "DPM++ 2M"
    spec = engine.specs[-1]
    assert isinstance(spec, Txt2Img) and (spec.sampling_method, spec.scheduler) == ("dpm++2m", "karras")
    params = parse_infotext(result.info["infotexts"][0])
    assert params["Seed"] == "5" and params["Steps"] == "3" and params["Schedule type"] == "Karras"


def test_img2img_and_inpainting(api: webuiapi.WebUIApi, engine: FakeEngine) -> None:
    photo = Image.new("RGB", (64, 64), (200, 40, 40))
    result = api.img2img(images=[photo], prompt="a painting", width=64, height=64, steps=2, denoising_strength=0.4)
    spec = engine.specs[-1]
    assert isinstance(spec, Img2Img) and spec.strength == 0.4 and result.images[0].size == (64, 64)
    mask = Image.new("L", (64, 64), 255)
    api.img2img(images=[photo], mask_image=mask, prompt="a hat", width=64, height=64, steps=2, mask_blur=2)
    spec = engine.specs[-1]
    assert isinstance(spec, Img2Img) and spec.mask is not None and spec.mask_blur == 2


def test_models_samplers_options_and_the_model_switch(api: webuiapi.WebUIApi, engine: FakeEngine) -> None:
    titles = api.util_get_model_names()
    assert "checkpoints/sdxs.safetensors" in [t.rsplit(" [", 1)[0] for t in titles]
    assert isinstance(engine.specs[0], Load) and engine.specs[0].model.name == "checkpoints/sdxs.safetensors"
    api.util_set_model("diffusion_models/flux-tiny.safetensors")
    assert (
        isinstance(engine.specs[-1], Load) and engine.specs[-1].model.name == "diffusion_models/flux-tiny.safetensors"
    )
    assert api.util_get_current_model() == "diffusion_models/flux-tiny.safetensors"
    samplers = {s["name"] for s in api.get_samplers()}
    assert {"Euler a", "DPM++ 2M", "LCM"} <= samplers
    api.util_wait_for_ready(check_interval=0.05)
    assert api.get_progress()["state"]["job_count"] == 0


def test_progress_and_interrupt(api: webuiapi.WebUIApi, engine: FakeEngine, base: str) -> None:
    engine.slow_seconds = 0.1
    done: list[object] = []
    thread = threading.Thread(
        target=lambda: done.append(httpx.post(f"{base}/sdapi/v1/txt2img", json={"prompt": "slow", "width": 64,
                                                                                 "height": 64, "steps": 30},
                                              timeout=30)))  # fmt: skip
    thread.start()
    assert engine.started.wait(5)
    deadline = time.monotonic() + 5
    while (progress := api.get_progress())["progress"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 0 < progress["progress"] < 1 and progress["state"]["job_count"] == 1
    assert progress["state"]["sampling_steps"] == 30
    api.interrupt()
    thread.join(10)
    assert done and done[0].status_code == 409  # type: ignore[attr-defined]
    assert api.get_progress()["state"]["job_count"] == 0


def test_extras_and_png_info(api: webuiapi.WebUIApi, base: str) -> None:
    upscaled = api.extra_single_image(Image.new("RGB", (16, 16)), upscaler_1="RealESRGAN_x4", upscaling_resize=4)
    assert upscaled.images and upscaled.images[0].size == (16, 16)  # the fake engine's size; the real one is e2e-tested
    made = api.txt2img(prompt="a fox, (detailed:1.2)", negative_prompt="blurry", width=64, height=64, steps=4, seed=9)
    # the image as the server sent it (webuiapi's PIL round trip would drop the PNG text chunk)
    info = httpx.post(f"{base}/sdapi/v1/png-info", json={"image": made.json["images"][0]}).json()
    assert info["parameters"]["Seed"] == "9"
    parsed = parse_infotext(info["info"])
    assert parsed["Prompt"] == "a fox, (detailed:1.2)" and parsed["Negative prompt"] == "blurry"
    assert parsed["Steps"] == "4" and parsed["Size"] == "64x64"


def test_open_webui_sequence(base: str, engine: FakeEngine) -> None:
    with httpx.Client(base_url=f"{base}/sdapi/v1", timeout=30) as http:
        options = http.get("/options").json()
        options["sd_model_checkpoint"] = http.get("/sd-models").json()[0]["title"]
        assert http.post("/options", json=options).status_code == 200  # the whole dict back, unknown keys and all
        assert http.get("/options").json()["samples_format"] == options["samples_format"]
        result = http.post("/txt2img", json={"prompt": "a lake", "width": 64, "height": 64, "steps": 2,
                                             "batch_size": 2}).json()  # fmt: skip
        assert len(result["images"]) == 2


def test_sillytavern_sequence(base: str, engine: FakeEngine) -> None:
    with httpx.Client(base_url=f"{base}/sdapi/v1", timeout=30) as http:
        http.post("/options", json={"sd_model_checkpoint": "checkpoints/sdxs.safetensors"})
        while http.get("/progress").json()["state"]["job_count"]:
            time.sleep(0.05)
        body = {"prompt": "a knight", "width": 64, "height": 64, "steps": 2, "enable_hr": True, "hr_scale": 2,
                "hr_upscaler": "Latent", "hr_second_pass_steps": 1, "denoising_strength": 0.5,
                "override_settings": {"CLIP_stop_at_last_layers": 2},
                "override_settings_restore_afterwards": True}  # fmt: skip
        result = http.post("/txt2img", json=body).json()
        spec = engine.specs[-1]
        assert isinstance(spec, Txt2Img) and spec.hires is not None and spec.hires.width == 128 and spec.clip_skip == 2
        assert json.loads(result["info"])["denoising_strength"] == 0.5
        assert http.get("/options").json()["CLIP_stop_at_last_layers"] == 1  # restored: the override was per request
        engine.slow_seconds = 0.1
        with pytest.raises(httpx.ReadTimeout):
            http.post("/txt2img", json={"prompt": "slow", "width": 64, "height": 64, "steps": 40}, timeout=0.5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            jobs = httpx.get(f"{base}/api/v1/jobs?status=cancelled").json()["jobs"]
            if jobs:
                break
            time.sleep(0.1)
        assert jobs, "the job of a client that went away was not cancelled"
        http.post("/interrupt")


def test_librechat_sequence(base: str) -> None:
    result = httpx.post(f"{base}/sdapi/v1/txt2img", json={"prompt": "a robot", "width": 64, "height": 64, "steps": 2},
                        timeout=30).json()  # fmt: skip
    infotext = json.loads(result["info"])["infotexts"][0]
    assert infotext.startswith("a robot\n") and "Steps: 2" in infotext
    assert Image.open(io.BytesIO(base64.b64decode(result["images"][0]))).size == (64, 64)


def test_errors_have_a1111_shape(base: str) -> None:
    response = httpx.post(f"{base}/sdapi/v1/txt2img", json={"prompt": "x", "sampler_name": "Warp Drive"})
    assert response.status_code == 422
    assert set(response.json()) == {"error", "detail", "body", "errors"} and "Warp Drive" in response.json()["detail"]
    odd = httpx.post(f"{base}/sdapi/v1/txt2img", json={"prompt": "x", "width": 64, "height": 64, "steps": 1,
                                                        "styles": ["a"], "alwayson_scripts": {}})  # fmt: skip
    assert odd.status_code == 200  # unknown fields are ignored, as A1111 ignores them
