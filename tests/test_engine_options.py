"""Engine load options at their three levels (setting < sidecar < request), the exact keywords the worker passes,
validation, `decode: "taesd"`, and (with the real worker) a reload when a request changes an option."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from sdrest.engine.calls import load_options
from tests.conftest import Library
from tests.fakes import FakeEngine
from tests.test_api import make_client, read_events, wait_for

BODY = {"model": "sdxs", "prompt": "a cat", "width": 64, "height": 64, "steps": 1}


@pytest.fixture
def models(library: Library) -> Library:
    library.add("sd1-sdxs", "checkpoints/sdxs.safetensors")
    library.add("taesd", "taesd/taesd.safetensors")
    return library


def _spec(models: Library, data_dir: Path, body: dict, **settings: object):  # type: ignore[no-untyped-def]
    engine = FakeEngine()
    with make_client(models, data_dir, engine, **settings) as client:
        response = client.post("/api/v1/generate", json=body)
        assert response.status_code == 202, response.text
        job = wait_for(client, response.json()["id"])
    return engine.specs[-1], job


def test_each_level_and_the_keywords_the_worker_passes(models: Library, data_dir: Path) -> None:
    setting = {"flash_attn": True, "keep_clip_on_cpu": True, "wtype": "q8_0"}
    spec, _ = _spec(models, data_dir, BODY, engine_options=setting)
    assert load_options(spec) == {"flash_attn": True, "keep_clip_on_cpu": True, "wtype": "q8_0"}
    (models.root / "checkpoints/sdxs.json").write_text(
        json.dumps({"engine": {"flash_attn": False, "enable_mmap": True}})
    )
    spec, _ = _spec(models, data_dir, BODY, engine_options=setting)
    assert load_options(spec) == {"flash_attn": False, "keep_clip_on_cpu": True, "wtype": "q8_0", "enable_mmap": True}
    spec, job = _spec(models, data_dir, {**BODY, "engine": {"wtype": "f16", "offload_params_to_cpu": True}},
                      engine_options=setting)  # fmt: skip
    assert load_options(spec) == {"flash_attn": False, "keep_clip_on_cpu": True, "wtype": "f16", "enable_mmap": True,
                                  "offload_params_to_cpu": True}  # fmt: skip
    assert any("loaded again" in w for w in job["warnings"])


def test_bad_options_are_refused_with_their_field(models: Library, data_dir: Path) -> None:
    with make_client(models, data_dir, FakeEngine()) as client:
        bad = client.post("/api/v1/generate", json={**BODY, "engine": {"wtype": "q9_9"}})
        assert bad.status_code == 422 and bad.json()["error"]["field"].startswith("$.engine")
        unknown = client.post("/api/v1/generate", json={**BODY, "engine": {"turbo": True}})
        assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "$.engine.turbo"
    (models.root / "checkpoints/sdxs.json").write_text(json.dumps({"engine": {"flash_attn": "yes"}}))
    with make_client(models, data_dir, FakeEngine()) as client:
        sidecar = client.post("/api/v1/generate", json=BODY)
        assert (
            sidecar.status_code == 422
            and "sidecar of checkpoints/sdxs.safetensors" in sidecar.json()["error"]["message"]
        )


def test_decode_with_taesd(models: Library, data_dir: Path, library: Library) -> None:
    spec, _ = _spec(models, data_dir, {**BODY, "decode": "taesd"})
    assert spec.model.plan["taesd_path"].endswith("taesd/taesd.safetensors")
    spec, _ = _spec(models, data_dir, {**BODY, "decode": "vae"})
    assert "taesd_path" not in spec.model.plan
    (models.root / "taesd/taesd.safetensors").unlink()
    with make_client(models, data_dir, FakeEngine()) as client:
        missing = client.post("/api/v1/generate", json={**BODY, "decode": "taesd"})
        assert missing.status_code == 422 and missing.json()["error"]["field"] == "$.decode"


@pytest.mark.binding
def test_a_request_with_other_options_reloads_the_model(library: Library, data_dir: Path) -> None:
    from starlette.testclient import TestClient

    from sdrest.app import create_app
    from sdrest.settings import load_settings

    library.add_weights("sd1-sdxs", "checkpoints/sdxs.safetensors")
    settings = load_settings({"models_dir": library.root, "data_dir": data_dir, "threads": 2}, env={})
    with TestClient(create_app(settings)) as client:
        first = client.post("/api/v1/generate", json=BODY).json()
        assert "loading" in [e["event"] for e in read_events(client, first["id"])]
        same = client.post("/api/v1/generate", json=BODY).json()
        assert "loading" not in [e["event"] for e in read_events(client, same["id"])]
        other = client.post("/api/v1/generate", json={**BODY, "engine": {"enable_mmap": True}}).json()
        assert "loading" in [e["event"] for e in read_events(client, other["id"])]


def test_previews_use_the_librarys_taesd_by_default(models: Library, data_dir: Path) -> None:
    models.add("sd1-full", "checkpoints/sd15.safetensors")
    sd15 = {**BODY, "model": "sd15", "preview": {"interval": 1}}
    spec, _ = _spec(models, data_dir, sd15)
    assert spec.preview.method == "tae"
    assert spec.model.plan["taesd_path"].endswith("taesd/taesd.safetensors")
    assert load_options(spec) == {"tae_preview_only": True}  # the image itself still goes through the VAE
    # A job asking for other previews, or none, loads the same context, so the two never reload each other.
    spec, _ = _spec(models, data_dir, {**sd15, "preview": {"method": "proj"}})
    assert spec.preview.method == "proj" and load_options(spec) == {"tae_preview_only": True}
    spec, _ = _spec(models, data_dir, {**BODY, "model": "sd15"})
    assert spec.preview is None and "taesd_path" in spec.model.plan
    # SDXS: sd.cpp decodes with any TAESD it loads, so none is added for previews alone.
    spec, _ = _spec(models, data_dir, {**BODY, "preview": {"interval": 1}})
    assert spec.preview.method == "proj" and "taesd_path" not in spec.model.plan
    (models.root / "taesd/taesd.safetensors").unlink()
    spec, _ = _spec(models, data_dir, sd15)
    assert spec.preview.method == "proj" and "taesd_path" not in spec.model.plan and load_options(spec) == {}


@pytest.mark.binding
def test_taesd_previews_leave_the_image_to_the_vae(library: Library, data_dir: Path) -> None:
    from starlette.testclient import TestClient

    from sdrest.app import create_app
    from sdrest.settings import load_settings

    library.add_weights("sd1-full", "checkpoints/sd15.safetensors")
    body = {**BODY, "model": "sd15", "steps": 2, "seed": 7, "preview": {"interval": 1}}
    png = {"Accept": "image/png"}
    settings = load_settings({"models_dir": library.root, "data_dir": data_dir, "threads": 2}, env={})
    with TestClient(create_app(settings)) as client:
        plain = client.post("/api/v1/generate?wait=true", json=body, headers=png)
        assert plain.status_code == 200, plain.text
    library.add_weights("taesd", "taesd/taesd.safetensors")
    with TestClient(create_app(settings)) as client:
        job = client.post("/api/v1/generate", json=body).json()
        events = read_events(client, job["id"])
        assert events[-1]["event"] == "completed", events[-1]
        previews = [e for e in events if e["event"] == "preview"]
        assert [p["data"]["step"] for p in previews] == [1, 2]
        image = Image.open(io.BytesIO(base64.b64decode(previews[0]["data"]["image"].split(",", 1)[1])))
        assert image.size == (64, 64)  # decoded by the TAESD ("proj" previews are latent-sized, 8x8)
        output = client.get(f"/api/v1/jobs/{job['id']}/output/{wait_for(client, job['id'])['outputs'][0]['filename']}")
    # The image itself is the VAE's, byte for byte (pixels: the infotext differs only in its model hash order).
    assert Image.open(io.BytesIO(output.content)).tobytes() == Image.open(io.BytesIO(plain.content)).tobytes()


def test_a1111_checkpoint_choice_loads_what_txt2img_then_uses(models: Library, data_dir: Path) -> None:
    models.add("sd1-full", "checkpoints/sd15.safetensors")
    engine = FakeEngine()
    with make_client(models, data_dir, engine) as client:
        assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "sd15"}).status_code == 200
        txt2img = client.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "width": 64, "height": 64, "steps": 1})
        assert txt2img.status_code == 200, txt2img.text
    load, image = engine.specs
    assert load.model.plan == image.model.plan and "taesd_path" in load.model.plan  # the preview TAESD too
    assert load_options(load) == load_options(image) == {"tae_preview_only": True}
