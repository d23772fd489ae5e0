"""The server end to end over HTTP with the real generation worker on fixture model files."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from sdrest.app import create_app
from sdrest.settings import load_settings
from tests.conftest import Library
from tests.fixtures import real, synthetic
from tests.test_api import read_events

pytestmark = pytest.mark.binding

TINY = {"model": "sdxs", "prompt": "a lovely cat", "width": 64, "height": 64, "steps": 1}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Library:
    library = Library(tmp_path_factory.mktemp("e2e") / "models")
    library.add_weights("sd1-sdxs", "checkpoints/sdxs.safetensors")
    library.add_weights("sd1-full", "checkpoints/sd15.safetensors")
    library.add_weights("lora-sd1-kohya-r4", "lora/pixel.safetensors")
    library.link(real.corrupt_lora(), "lora/damaged.safetensors")
    return library


@pytest.fixture(scope="module")
def client(models: Library, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("e2e-data")
    settings = load_settings({"models_dir": models.root, "data_dir": data, "threads": 2}, env={})
    with TestClient(create_app(settings)) as client:
        yield client


def test_png_of_the_asked_size_with_infotext_and_identical_bytes_for_a_seed(client: TestClient) -> None:
    first = client.post(
        "/api/v1/generate?wait=true", json={**TINY, "seed": 42, "width": 128}, headers={"Accept": "image/png"}
    )
    assert first.status_code == 200, first.text
    image = Image.open(io.BytesIO(first.content))
    assert image.size == (128, 64)
    infotext = image.text["parameters"]
    assert infotext.startswith("a lovely cat\n")
    assert "Steps: 1, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 128x64" in infotext
    assert "Model: sdxs" in infotext
    second = client.post(
        "/api/v1/generate?wait=true", json={**TINY, "seed": 42, "width": 128}, headers={"Accept": "image/png"}
    )
    assert second.content == first.content
    other = client.post(
        "/api/v1/generate?wait=true", json={**TINY, "seed": 43, "width": 128}, headers={"Accept": "image/png"}
    )
    assert other.content != first.content


def test_sse_progress_in_order_ending_in_completed(client: TestClient) -> None:
    job = client.post(
        "/api/v1/generate", json={**TINY, "steps": 4, "preview": {"method": "proj", "interval": 2}}
    ).json()
    events = read_events(client, job["id"])
    types = [e["event"] for e in events]
    assert types[-1] == "completed", types
    progress = [(e["data"]["step"], e["data"]["steps"]) for e in events if e["event"] == "progress"]
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    previews = [e for e in events if e["event"] == "preview"]
    assert previews and previews[0]["data"]["image"].startswith("data:image/jpeg;base64,")
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    latest = client.get(f"/api/v1/jobs/{job['id']}/preview")
    assert latest.status_code == 200 and latest.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(latest.content)).size == (8, 8)  # "proj" previews are latent-sized


def test_lora_from_the_library_changes_the_image(client: TestClient) -> None:
    sd15 = {**TINY, "model": "sd15", "seed": 5}
    png = {"Accept": "image/png"}
    plain = client.post("/api/v1/generate?wait=true", json=sd15, headers=png)
    tagged = client.post(
        "/api/v1/generate?wait=true", json={**sd15, "prompt": "a lovely cat <lora:pixel:1>"}, headers=png
    )
    structured = client.post("/api/v1/generate?wait=true", json={**sd15, "loras": [{"name": "pixel"}]}, headers=png)
    again = client.post("/api/v1/generate?wait=true", json=sd15, headers=png)
    assert tagged.status_code == 200 and tagged.content != plain.content
    assert structured.content == tagged.content
    assert again.content == plain.content  # at_runtime LoRAs leave nothing behind
    assert "<lora:pixel:1>" in Image.open(io.BytesIO(tagged.content)).text["parameters"]


def test_full_size_lora_on_a_distilled_unet_is_refused(client: TestClient) -> None:
    response = client.post("/api/v1/generate", json={**TINY, "loras": [{"name": "pixel"}]})
    assert response.status_code == 422
    assert "would abort" in response.json()["error"]["message"]


def test_cancel_queued_and_running_then_the_next_job_succeeds(client: TestClient) -> None:
    running = client.post("/api/v1/generate", json={**TINY, "width": 256, "height": 256, "steps": 40}).json()
    queued = client.post("/api/v1/generate", json=TINY).json()
    with client.stream("GET", f"/api/v1/jobs/{running['id']}/events") as stream:
        for line in stream.iter_lines():
            if line == "event: progress":
                break
    cancelled = client.post(f"/api/v1/jobs/{queued['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    start = time.monotonic()
    stopped = client.post(f"/api/v1/jobs/{running['id']}/cancel").json()
    assert stopped["status"] == "cancelled"
    assert time.monotonic() - start < 2.0
    after = client.post("/api/v1/generate?wait=true", json=TINY).json()
    assert after["status"] == "completed"


def test_native_abort_fails_the_job_and_the_server_stays_healthy(client: TestClient) -> None:
    damaged = {**TINY, "model": "sd15", "prompt": "a cat <lora:damaged:1>"}
    crashed = client.post("/api/v1/generate?wait=true", json=damaged).json()
    assert crashed["status"] == "failed"
    error = crashed["error"]
    assert error["code"] == "engine_crashed"
    assert error["details"]["signal"] == "SIGABRT"
    assert error["details"]["log"]  # sd.cpp's last lines before it died
    health = client.get("/api/v1/health").json()
    assert health["status"] == "ok"
    after = client.post("/api/v1/generate?wait=true", json=TINY).json()
    assert after["status"] == "completed"


def test_a_model_that_kills_the_worker_while_loading_is_marked_broken(client: TestClient, models: Library) -> None:
    # sd.cpp 0.4.7 detects SVD, then segfaults setting up its conditioner, before any weight is read.
    models.link(synthetic.build(synthetic.get_case("svd-xt")), "checkpoints/svd.safetensors")
    client.get("/api/v1/models?refresh=1")
    job = client.post("/api/v1/generate?wait=true", json={**TINY, "model": "svd"}).json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "engine_crashed" and job["error"]["details"]["while_loading"] is True
    again = client.post("/api/v1/generate", json={**TINY, "model": "svd"})
    assert again.status_code == 422 and "marked broken" in again.json()["error"]["message"]
    assert client.post("/api/v1/generate?wait=true", json=TINY).json()["status"] == "completed"


def test_version_reports_the_build(client: TestClient) -> None:
    info = client.get("/api/v1/version").json()
    assert info["binding"] == "0.4.7" and info["backend"] == "CPU" and info["engine_error"] is None


def test_job_record_has_everything(client: TestClient, models: Library) -> None:
    job = client.post(
        "/api/v1/generate?wait=true", json={**TINY, "batch_count": 2, "seed": 9, "output_format": "webp"}
    ).json()
    assert job["status"] == "completed"
    assert [o["seed"] for o in job["outputs"]] == [9, 10]
    assert all(o["media_type"] == "image/webp" for o in job["outputs"])
    assert job["params"]["sampling_method"] == "euler_a" and job["architecture"] == "sdxs_512_ds"
    assert job["started_at"] <= job["finished_at"]
    webp = client.get(job["outputs"][1]["url"])
    assert webp.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(webp.content)).size == (64, 64)


def test_idle_worker_is_stopped_and_restarted_on_demand(models: Library, tmp_path: Path) -> None:
    settings = load_settings({"models_dir": models.root, "data_dir": tmp_path, "idle_unload_seconds": 1}, env={})
    with TestClient(create_app(settings)) as client:
        assert client.post("/api/v1/generate?wait=true", json=TINY).json()["status"] == "completed"
        assert client.get("/api/v1/health").json()["worker"]["state"] == "idle"
        deadline = time.monotonic() + 10
        while client.get("/api/v1/health").json()["worker"]["state"] != "stopped":
            assert time.monotonic() < deadline, "the idle model was never unloaded"
            time.sleep(0.2)
        assert client.post("/api/v1/generate?wait=true", json=TINY).json()["status"] == "completed"


def test_a_binding_that_cannot_load_gives_503(models: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STABLE_DIFFUSION_CPP_LIB", str(tmp_path / "missing.so"))  # the worker's import fails
    settings = load_settings({"models_dir": models.root, "data_dir": tmp_path}, env={})
    with TestClient(create_app(settings)) as client:
        version = client.get("/api/v1/version").json()  # waits for the start-up probe
        assert "does not load" in version["engine_error"]
        response = client.post("/api/v1/generate", json=TINY)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "engine_unavailable"
        assert client.get("/api/v1/health").json()["status"] == "degraded"


def test_infotext_carries_the_model_hash(client: TestClient, models: Library) -> None:
    import hashlib

    first = client.post("/api/v1/generate?wait=true", json=TINY, headers={"Accept": "image/png"})
    expected = hashlib.sha256((models.root / "checkpoints/sdxs.safetensors").read_bytes()).hexdigest()[:10]
    assert f"Model hash: {expected}, Model: sdxs" in Image.open(io.BytesIO(first.content)).text["parameters"]
