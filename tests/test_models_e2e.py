"""Model management with the real engine: a conversion queued behind a running generation, test loads in a child
process, load and unload through the generation lane."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from sdrest.app import create_app
from sdrest.settings import load_settings
from tests.conftest import Library
from tests.fixtures import synthetic
from tests.test_api import wait_for

pytestmark = pytest.mark.binding

TINY = {"model": "sdxs", "prompt": "a lovely cat", "width": 128, "height": 128, "steps": 2, "seed": 11}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Library:
    library = Library(tmp_path_factory.mktemp("models-e2e") / "models")
    library.add_weights("sd1-sdxs", "checkpoints/sdxs.safetensors")
    library.add_weights("flux-tiny-diffusion-model", "diffusion_models/flux-tiny.safetensors")
    library.add_weights("vae-flux-16ch", "vae/ae.safetensors")
    library.add_weights("clip-l-text-encoder", "text_encoders/clip_l.safetensors")
    library.link(synthetic.build(synthetic.get_case("svd-xt")), "checkpoints/svd.safetensors")
    return library


@pytest.fixture(scope="module")
def client(models: Library, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("models-e2e-data")
    settings = load_settings({"models_dir": models.root, "data_dir": data, "threads": 2}, env={})
    with TestClient(create_app(settings)) as client:
        yield client


def _image(client: TestClient, job: dict) -> bytes:
    return client.get(job["outputs"][0]["url"]).content


def test_a_conversion_beside_a_running_generation(client: TestClient, models: Library) -> None:
    baseline = client.post("/api/v1/generate?wait=true", json=TINY).json()
    generating = client.post("/api/v1/generate", json=TINY).json()
    converting = client.post("/api/v1/models/convert", json={"model": "flux-tiny", "type": "q8_0"}).json()
    assert converting["kind"] == "convert" and converting["position"] in (0, 1)
    converted = wait_for(client, converting["id"], timeout=300)  # real work on 2 shared cores
    generated = wait_for(client, generating["id"], timeout=300)
    assert converted["status"] == "completed", converted
    assert converted["result"] == {"model": "diffusion_models/flux-tiny-q8_0.gguf"}
    assert generated["status"] == "completed" and _image(client, generated) == _image(client, baseline)
    entry = client.get("/api/v1/models/flux-tiny-q8_0").json()
    assert (entry["role"], entry["format"], entry["details"]["quantization"]) == ("diffusion_model", "gguf", "q8_0")
    again = client.post("/api/v1/models/convert", json={"model": "flux-tiny", "type": "q8_0"})
    assert again.status_code == 422 and again.json()["error"]["field"] == "$.output"
    assert not list(models.root.rglob(".*partial"))


def test_validate_with_a_test_load(client: TestClient) -> None:
    good = client.post("/api/v1/models/sdxs/validate", json={"load": True}).json()
    assert good["ok"] is True and good["loaded"] is True
    crash = client.post("/api/v1/models/svd/validate", json={"load": True}).json()
    assert crash["ok"] is False and crash["broken"] is True and "SIGSEGV" in crash["errors"][0]
    assert client.get("/api/v1/health").json()["status"] == "ok"
    refused = client.post("/api/v1/generate", json={**TINY, "model": "svd"})
    assert refused.status_code == 422 and "marked broken" in refused.json()["error"]["message"]


def test_load_then_generate_reuses_the_model_and_unload_frees_it(client: TestClient) -> None:
    loaded = client.post("/api/v1/models/sdxs/load?wait=true").json()
    assert loaded["status"] == "completed"
    health = client.get("/api/v1/health").json()["worker"]
    assert health["model"] == "checkpoints/sdxs.safetensors" and health["memory_bytes"] > 0
    job = client.post("/api/v1/generate?wait=true", json={"prompt": "no model named", "width": 64, "height": 64,
                                                          "steps": 1}).json()  # fmt: skip
    assert job["model"] == "checkpoints/sdxs.safetensors" and job["status"] == "completed"
    assert "load" not in job["timings"] or job["timings"]["load"] == 0.0
    assert client.post("/api/v1/models/unload?wait=true").json()["status"] == "completed"
    assert client.get("/api/v1/health").json()["worker"]["state"] == "stopped"
