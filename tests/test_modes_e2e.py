"""Every generation mode end to end over HTTP with the real worker, on random-weight files in sd.cpp's layouts.

Each test checks the output's size, and that the mode's input changed the result against the same request without
it. The images are noise; the code paths are real.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat
from starlette.testclient import TestClient

from sdrest.app import create_app
from sdrest.settings import load_settings
from tests.conftest import Library
from tests.fixtures import real

pytestmark = pytest.mark.binding

SDXS = {"model": "sdxs", "prompt": "a lovely cat", "width": 64, "height": 64, "steps": 1, "seed": 42}
SD15 = {**SDXS, "model": "sd15"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Library:
    library = Library(tmp_path_factory.mktemp("modes") / "models")
    library.add_weights("sd1-sdxs", "checkpoints/sdxs.safetensors")
    library.add_weights("sd1-full", "checkpoints/sd15.safetensors")
    library.add_weights("lora-sd1-kohya-r4", "lora/pixel.safetensors")
    library.add_weights("controlnet-sd1", "controlnet/canny-sd15.safetensors")
    library.add_weights("realesrgan-x4-1block", "esrgan/realesrgan-x4.safetensors")
    library.add_weights("taesd", "taesd/taesd.safetensors")
    library.add_weights("vae-sd1-dec32", "vae/sd-vae.safetensors")
    library.add_weights("flux-tiny-diffusion-model", "diffusion_models/flux-tiny-kontext.safetensors")
    library.add_weights("vae-flux-16ch", "vae/ae.safetensors")
    library.add_weights("clip-l-text-encoder", "text_encoders/clip_l.safetensors")
    return library


@pytest.fixture(scope="module")
def client(models: Library, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("modes-data")
    settings = load_settings({"models_dir": models.root, "data_dir": data, "threads": 2}, env={})
    with TestClient(create_app(settings)) as client:
        yield client


def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _photo(width: int = 64, height: int = 64) -> Image.Image:
    """A picture with structure: a gradient with a bright square."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image.paste((250, 40, 40), (width // 4, height // 4, width // 2, height // 2))
    return image


def _generate(client: TestClient, route: str = "generate", **body: object) -> tuple[dict, list[Image.Image]]:
    response = client.post(f"/api/v1/{route}?wait=true", json=body)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "completed", job
    pictures = [Image.open(io.BytesIO(client.get(o["url"]).content)) for o in job["outputs"]]
    for picture in pictures:
        picture.load()
    return job, pictures


def _bytes(picture: Image.Image) -> bytes:
    return picture.convert("RGB").tobytes()


def test_img2img_uses_the_init_image(client: TestClient) -> None:
    _, (plain,) = _generate(client, **SDXS)
    job, (image,) = _generate(client, **SDXS, init_image=_png(_photo()), strength=0.5)
    assert job["kind"] == "img2img" and job["params"]["mode"] == "img2img"
    assert image.size == (64, 64) and _bytes(image) != _bytes(plain)
    assert "Denoising strength: 0.5" in image.text["parameters"]
    _, (other,) = _generate(client, **SDXS, init_image=_png(_photo().rotate(90)), strength=0.5)
    assert _bytes(other) != _bytes(image)


def test_an_init_image_of_another_size_is_resized_with_a_warning(client: TestClient) -> None:
    job, (image,) = _generate(client, **SDXS, init_image=_png(_photo(96, 80)))
    assert image.size == (64, 64)
    assert job["warnings"] == ["$.init_image was 96x80; resized to 64x64"] or any("96x80" in w for w in job["warnings"])


def test_inpainting_keeps_the_pixels_outside_the_mask(client: TestClient) -> None:
    photo = _photo()
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))  # repaint the right half
    job, (image,) = _generate(client, **SDXS, init_image=_png(photo), mask=_png(mask), mask_blur=0)
    assert job["params"]["mode"] == "inpaint" and image.size == (64, 64)
    left = (0, 0, 30, 64)
    diff = ImageChops.difference(image.convert("RGB").crop(left), photo.crop(left))
    assert max(ImageStat.Stat(diff).extrema[c][1] for c in range(3)) <= 2  # outside the mask: the input
    right = (34, 0, 64, 64)
    changed = ImageChops.difference(image.convert("RGB").crop(right), photo.crop(right))
    assert max(ImageStat.Stat(changed).mean) > 5  # inside: repainted
    assert "Mask blur: 0" in image.text["parameters"]
    _, (inverted,) = _generate(client, **SDXS, init_image=_png(photo), mask=_png(mask), mask_blur=0, invert_mask=True)
    kept = ImageChops.difference(inverted.convert("RGB").crop(right), photo.crop(right))
    assert max(ImageStat.Stat(kept).extrema[c][1] for c in range(3)) <= 2


def test_outpainting_grows_the_canvas(client: TestClient) -> None:
    photo = _photo()
    job, (image,) = _generate(client, **SDXS, init_image=_png(photo), outpaint={"left": 64, "bottom": 64}, mask_blur=0)
    assert job["params"]["mode"] == "outpaint"
    assert image.size == (128, 128)
    inner = (72, 8, 120, 48)  # well inside the original, away from the overlap band
    kept = ImageChops.difference(image.convert("RGB").crop(inner), photo.crop((8, 8, 56, 48)))
    assert max(ImageStat.Stat(kept).extrema[c][1] for c in range(3)) <= 2


def test_controlnet_with_and_without_canny(client: TestClient) -> None:
    _, (plain,) = _generate(client, **SD15)
    control = {"model": "canny-sd15", "image": _png(_photo()), "strength": 1.0}
    job, (guided,) = _generate(client, **SD15, control=control)
    assert guided.size == (64, 64) and _bytes(guided) != _bytes(plain)
    assert 'ControlNet 0: "Module: none, Model: canny-sd15, Weight: 1"' in guided.text["parameters"]
    _, (canny,) = _generate(client, **SD15, control={**control, "preprocess": "canny"})
    assert _bytes(canny) != _bytes(guided)
    assert "Module: canny" in canny.text["parameters"]


def test_standalone_upscale_multiplies_the_size(client: TestClient) -> None:
    job, (image,) = _generate(client, "upscale", image=_png(_photo(32, 24)), model="realesrgan-x4")
    assert job["kind"] == "upscale" and image.size == (128, 96)
    _, (half,) = _generate(client, "upscale", image=_png(_photo(32, 24)), model="realesrgan-x4", factor=2)
    assert half.size == (64, 48)
    assert "Postprocess upscaler: realesrgan-x4" in half.text["parameters"]


def test_upscale_after_generation(client: TestClient) -> None:
    job, (image,) = _generate(client, **SDXS, upscale={"model": "realesrgan-x4", "factor": 2})
    assert image.size == (128, 128)
    assert "Postprocess upscale by: 2" in image.text["parameters"]


def test_hires_fix_makes_the_final_size(client: TestClient) -> None:
    _, (latent,) = _generate(client, **SD15, hires={"scale": 2, "upscaler": "latent", "steps": 1})
    assert latent.size == (128, 128)
    assert "Hires upscale: 2, Hires steps: 1, Hires upscaler: Latent" in latent.text["parameters"]
    _, (model,) = _generate(
        client, **SD15, hires={"width": 192, "height": 128, "upscaler": "realesrgan-x4", "steps": 1}
    )
    assert model.size == (192, 128)
    assert "Hires upscaler: realesrgan-x4" in model.text["parameters"]


def test_a_batch_of_three_has_distinct_recorded_seeds(client: TestClient) -> None:
    job, pictures = _generate(client, **{**SDXS, "seed": 100}, batch_count=3)
    assert [o["seed"] for o in job["outputs"]] == [100, 101, 102]
    assert [f"Seed: {s}," in p.text["parameters"] for p, s in zip(pictures, (100, 101, 102), strict=True)] == [True] * 3
    assert len({_bytes(p) for p in pictures}) == 3


def test_lora_by_tag_and_by_field(client: TestClient) -> None:
    _, (plain,) = _generate(client, **SD15)
    _, (tagged,) = _generate(client, **{**SD15, "prompt": "a lovely cat <lora:pixel:1>"})
    _, (named,) = _generate(client, **SD15, loras=[{"name": "pixel", "weight": 1.0}])
    assert _bytes(tagged) != _bytes(plain) and _bytes(named) == _bytes(tagged)


def test_taesd_and_a_separate_vae_change_the_decode(client: TestClient) -> None:
    _, (plain,) = _generate(client, **SD15)
    _, (tiny,) = _generate(client, **SD15, taesd="taesd")
    _, (vae,) = _generate(client, **SD15, vae="sd-vae")
    assert len({_bytes(plain), _bytes(tiny), _bytes(vae)}) == 3
    assert tiny.size == vae.size == (64, 64)
    assert "VAE: sd-vae" in vae.text["parameters"]


def test_an_embedding_named_in_the_prompt_applies(client: TestClient, models: Library) -> None:
    body = {**SD15, "prompt": "a lovely cat, sdrestemb"}
    _, (before,) = _generate(client, **body)
    models.link(real.embedding_sd1(), "embeddings/sdrestemb.safetensors")
    assert client.get("/api/v1/models?refresh=1").status_code == 200
    time.sleep(0.1)
    _, (after,) = _generate(client, **body)
    assert _bytes(after) != _bytes(before)
    assert "TI: sdrestemb" in after.text["parameters"]


def test_reference_images_on_the_tiny_flux(client: TestClient) -> None:
    flux = {"model": "flux-tiny-kontext", "prompt": "make it snow", "width": 64, "height": 64, "steps": 2, "seed": 3}
    _, (plain,) = _generate(client, **flux)
    job, (edited,) = _generate(client, **flux, ref_images=[_png(_photo())])
    assert edited.size == (64, 64) and _bytes(edited) != _bytes(plain)
    assert job["params"]["ref_images"] == 1


def test_multipart_upload_is_the_same_as_base64(client: TestClient) -> None:
    buffer = io.BytesIO()
    _photo().save(buffer, format="PNG")
    form = {k: str(v) for k, v in SDXS.items()} | {"strength": "0.5"}
    response = client.post("/api/v1/generate?wait=true", data=form, files={"init_image": ("p.png", buffer.getvalue())})
    assert response.status_code == 200, response.text
    job = response.json()
    uploaded = client.get(job["outputs"][0]["url"]).content
    _, (same,) = _generate(client, **SDXS, init_image=_png(_photo()), strength=0.5)
    assert _bytes(Image.open(io.BytesIO(uploaded))) == _bytes(same)
    again, _ = _generate(client, **SDXS, init_image={"output": f"{job['id']}/{job['outputs'][0]['filename']}"})
    assert again["status"] == "completed"


def test_jobs_sse_and_cancel_work_for_every_kind(client: TestClient) -> None:
    from tests.test_api import read_events

    job = client.post("/api/v1/upscale", json={"image": _png(_photo(32, 32)), "model": "realesrgan-x4"}).json()
    events = read_events(client, job["id"])
    assert events[-1]["event"] == "completed"
    slow = client.post("/api/v1/generate", json={**SD15, "steps": 30, "width": 256, "height": 256}).json()
    time.sleep(1.0)
    cancelled = client.post(f"/api/v1/jobs/{slow['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert client.get("/api/v1/health").json()["status"] == "ok"


def test_a_real_video_job_on_a_header_only_wan_file_fails_cleanly(tmp_path: Path) -> None:
    """No Wan file with weights fits here: the worker gets a real Wan 1.3B header with no data behind it. The job
    fails with a clear error, and the same worker process serves the next job."""
    import struct

    from sdrest.engine.errors import EngineCrashed, GenerationFailed
    from sdrest.engine.supervisor import Supervisor
    from sdrest.specs import ModelUse, Video
    from tests.fakes import make_spec
    from tests.fixtures import synthetic

    sparse = synthetic.build(synthetic.get_case("wan21-t2v-1.3b"))
    with open(sparse, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = f.read(length)
    truncated = tmp_path / "wan2.1_t2v_1.3B_fp16.safetensors"
    truncated.write_bytes(struct.pack("<Q", length) + header)
    model = ModelUse("wan.safetensors", "wan2_1_t2v", {"diffusion_model_path": str(truncated)}, str(truncated))
    spec = Video(model=model, prompt="waves", clean_prompt="waves", width=64, height=64, frames=5, fps=8, steps=1,
                 cfg_scale=5.0, sampling_method="euler", seed=1)  # fmt: skip
    supervisor = Supervisor({"n_threads": 2})
    try:
        with pytest.raises((GenerationFailed, EngineCrashed)) as failure:
            supervisor.run("video", spec, lambda event: None)
        if isinstance(failure.value, GenerationFailed):
            assert failure.value.code == "model_load_failed"
        sdxs = real.build("sd1-sdxs")
        tiny = make_spec(model=ModelUse("sdxs", "sdxs_512_ds", {"model_path": str(sdxs)}, str(sdxs)), steps=1)
        done = supervisor.run("next", tiny, lambda event: None)
        assert [(i.width, i.height) for i in done.images] == [(64, 64)]
    finally:
        supervisor.close()
