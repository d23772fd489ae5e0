"""Model management over REST with a fake engine: browse, inspect, load/unload through the queue, validate, hash,
delete and restore, presets and templates, system facts — and every name a client sends stays inside the library."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from starlette.testclient import TestClient

from tests.conftest import Library
from tests.fakes import FakeEngine
from tests.fixtures import synthetic
from tests.raw_http import raw_request
from tests.test_api import FAST, make_client, wait_for


@pytest.fixture
def models(library: Library) -> Library:
    library.add("flux-tiny-diffusion-model", "diffusion_models/flux-tiny.safetensors")
    library.add("vae-flux-16ch", "vae/ae.safetensors")
    library.add("clip-l-text-encoder", "text_encoders/clip_l.safetensors")
    library.add("sd1-sdxs", "checkpoints/sdxs.safetensors")
    library.add("lora-sd1-kohya-r4", "lora/pixel.safetensors")
    library.add("realesrgan-x4-1block", "esrgan/x4.safetensors")
    library.write("checkpoints/sdxs.preview.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    library.link(synthetic.build(synthetic.get_case("lora-sd1-kohya")), "lora/style.safetensors")
    return library


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def client(models: Library, data_dir: Path, engine: FakeEngine) -> Iterator[TestClient]:
    with make_client(models, data_dir, engine) as client:
        yield client


def test_list_filters_sorts_and_pages(client: TestClient) -> None:
    everything = client.get("/api/v1/models").json()
    assert everything["total"] == 7 and len(everything["models"]) == 7
    loras = client.get("/api/v1/models?role=lora").json()
    assert {m["name"] for m in loras["models"]} == {"lora/pixel.safetensors", "lora/style.safetensors"}
    assert client.get("/api/v1/models?architecture=flux").json()["total"] == 1
    assert client.get("/api/v1/models?search=SDX").json()["models"][0]["name"] == "checkpoints/sdxs.safetensors"
    by_size = client.get("/api/v1/models?sort=size&order=desc&limit=2&page=1").json()
    assert by_size["total"] == 7 and len(by_size["models"]) == 2
    assert by_size["models"][0]["size"] >= by_size["models"][1]["size"]
    page2 = client.get("/api/v1/models?sort=name&limit=3&page=2").json()["models"]
    assert [m["name"] for m in page2] == sorted(m["name"] for m in everything["models"])[3:6]
    assert client.get("/api/v1/models?sort=colour").status_code == 422


def test_one_model_by_id_or_name(client: TestClient) -> None:
    listed = client.get("/api/v1/models?role=checkpoint").json()["models"][0]
    by_id = client.get(f"/api/v1/models/{listed['id']}").json()
    by_name = client.get("/api/v1/models/checkpoints/sdxs.safetensors").json()
    assert by_id == by_name and by_id["plan"]["model_path"].endswith("sdxs.safetensors")
    assert by_id["preview"] == f"/api/v1/models/{listed['id']}/preview"
    assert client.get(by_id["preview"]).status_code == 200
    lora = client.get("/api/v1/models/style").json()
    assert lora["training"]["base_model"] and lora["metadata"]
    assert client.get("/api/v1/models/nope").status_code == 404
    flux = client.get("/api/v1/models/flux-tiny").json()
    assert flux["companions"] == {"vae": "vae/ae.safetensors", "clip_l": "text_encoders/clip_l.safetensors"}


def test_roles_directories_stats_refresh(client: TestClient, models: Library) -> None:
    roles = {r["role"]: r["count"] for r in client.get("/api/v1/models/roles").json()["roles"]}
    assert roles["lora"] == 2 and roles["checkpoint"] == 1
    folders = {d["name"]: d for d in client.get("/api/v1/models/directories").json()["directories"]}
    assert folders["lora"]["exists"] and folders["lora"]["files"] == 2 and folders["lora"]["writable"]
    stats = client.get("/api/v1/models/stats").json()
    assert stats["files"] == 7 and stats["by_role"]["lora"]["files"] == 2 and stats["disk_free"] > 0
    models.add("taesd", "taesd/taesd.safetensors")
    assert client.post("/api/v1/models/refresh").json() == {"files": 8}


def test_load_and_unload_run_in_order_with_generations(client: TestClient, engine: FakeEngine) -> None:
    engine.slow_seconds = 0.1
    first = client.post("/api/v1/generate", json={**FAST, "model": "flux-tiny", "prompt": "slow"}).json()
    load = client.post("/api/v1/models/sdxs/load").json()
    assert load["kind"] == "load" and load["position"] == 1
    done = wait_for(client, load["id"])
    assert done["status"] == "completed" and wait_for(client, first["id"])["status"] == "completed"
    assert engine.ran == [first["id"], load["id"]]
    health = client.get("/api/v1/health").json()
    assert health["worker"]["model"] == "checkpoints/sdxs.safetensors"
    assert health["worker"]["loaded"]["model_path"].endswith("sdxs.safetensors")
    unload = client.post("/api/v1/models/unload?wait=true").json()
    assert unload["status"] == "completed" and engine.loaded is None
    assert client.get("/api/v1/health").json()["worker"]["model"] is None


def test_validate_reports_header_and_companions(client: TestClient, models: Library) -> None:
    good = client.post("/api/v1/models/flux-tiny/validate").json()
    assert good["ok"] is True and good["plan"]["vae_path"].endswith("ae.safetensors")
    (models.root / "vae/ae.safetensors").unlink()
    client.post("/api/v1/models/refresh")
    bad = client.post("/api/v1/models/flux-tiny/validate").json()
    assert bad["ok"] is False and "needs a 16-channel VAE" in bad["errors"][0]


def test_hash_is_a_job_on_the_side_lane(client: TestClient, engine: FakeEngine) -> None:
    engine.slow_seconds = 0.2
    generating = client.post(
        "/api/v1/generate", json={**FAST, "model": "flux-tiny", "prompt": "slow", "steps": 10}
    ).json()
    assert engine.started.wait(5)
    job = client.post("/api/v1/models/hash", json={"models": ["pixel", "x4"]}).json()
    assert job["kind"] == "hash"
    done = wait_for(client, job["id"])
    assert client.get(f"/api/v1/jobs/{generating['id']}").json()["status"] == "running"  # not held up
    import hashlib

    pixel = done["result"]["hashes"]["lora/pixel.safetensors"]
    path = client.get("/api/v1/models/pixel").json()["path"]
    assert pixel["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert client.get("/api/v1/models/pixel").json()["hashes"]["sha256"] == pixel["sha256"]
    wait_for(client, generating["id"])


def test_delete_moves_to_trash_and_restore_puts_back(client: TestClient, models: Library, data_dir: Path) -> None:
    model = client.get("/api/v1/models/sdxs").json()
    deleted = client.delete(f"/api/v1/models/{model['id']}").json()
    assert sorted(deleted["files"]) == ["sdxs.preview.png", "sdxs.safetensors"]
    assert not (models.root / "checkpoints/sdxs.safetensors").exists()
    assert client.get("/api/v1/models/sdxs").status_code == 404
    (trash,) = client.get("/api/v1/trash").json()["trash"]
    assert trash["name"] == "checkpoints/sdxs.safetensors"
    restored = client.post("/api/v1/trash", json={"id": trash["id"]})
    assert restored.status_code == 200
    assert (models.root / "checkpoints/sdxs.preview.png").exists()
    assert client.get("/api/v1/models/sdxs").status_code == 200
    assert client.get("/api/v1/trash").json()["trash"] == []


def test_presets_and_templates(client: TestClient, engine: FakeEngine) -> None:
    preset = {"steps": 3, "width": 64, "height": 64, "negative_prompt": "blurry"}
    assert client.post("/api/v1/presets/quick", json=preset).status_code == 201
    assert client.post("/api/v1/presets/quick", json=preset).status_code == 409
    assert client.get("/api/v1/presets").json() == {"names": ["quick"]}
    assert client.get("/api/v1/presets/quick").json()["value"] == preset
    job = client.post(
        "/api/v1/generate?wait=true", json={"prompt": "a cat", "model": "sdxs", "preset": "quick", "steps": 2}
    ).json()
    assert job["params"]["steps"] == 2 and job["params"]["negative_prompt"] == "blurry"  # the request wins
    assert client.put("/api/v1/prompts/castle", content=b"a castle on a hill").status_code == 404
    assert client.post("/api/v1/prompts/castle", content=b"a castle on a hill").status_code == 201
    assert client.get("/api/v1/prompts/castle").json()["value"] == "a castle on a hill"
    assert client.put("/api/v1/prompts/castle", content=b"a tower").json()["value"] == "a tower"
    assert client.delete("/api/v1/prompts/castle").status_code == 204
    assert client.get("/api/v1/prompts/castle").status_code == 404
    bad = client.post("/api/v1/generate", json={"prompt": "x", "preset": "missing"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "$.preset"


def test_system_and_limits(client: TestClient) -> None:
    system = client.get("/api/v1/system").json()
    assert system["memory"]["total"] > 0 and system["cpu"]["logical_cores"] >= 1
    assert system["disks"]["models"]["free"] > 0 and system["worker"]["state"] == "stopped"
    assert client.get("/api/v1/limits").json()["memory_available_bytes"] > 0


ESCAPES = ["../../etc/passwd", "/etc/passwd", "..%2F..%2Fjobs.sqlite3", "a\\..\\b", "x" * 300, "%00evil", ".."]


@pytest.mark.parametrize("name", ESCAPES)
def test_no_name_leaves_the_models_directory(client: TestClient, name: str, models: Library, data_dir: Path) -> None:
    """Every route that takes a name refuses one that would leave its folder (404 for lookups, 422 for writes); the
    paths are sent raw, so `..` reaches the handlers."""
    raw = name.encode()
    outcomes = [
        raw_request(client, "GET", b"/api/v1/models/" + raw),
        raw_request(client, "POST", b"/api/v1/models/" + raw + b"/load"),
        raw_request(client, "POST", b"/api/v1/models/" + raw + b"/validate"),
        raw_request(client, "DELETE", b"/api/v1/models/" + raw),
        raw_request(client, "GET", b"/api/v1/presets/" + raw),
        raw_request(client, "POST", b"/api/v1/presets/" + raw, b'{"steps": 1}'),
        raw_request(client, "PUT", b"/api/v1/prompts/" + raw, b"x"),
        raw_request(client, "POST", b"/api/v1/neg_prompts/" + raw, b"x"),
    ]
    plain = unquote(name)  # in a JSON body the escape is the character itself
    for body, field in (
        ({"models": [plain]}, "hash"),
        ({"model": "sdxs", "type": "q8_0", "output": plain + ".gguf"}, "convert"),
        ({"repo_id": "a/b", "filename": plain + ".safetensors", "role": "lora"}, "download"),
    ):
        response = client.post(f"/api/v1/models/{field}", json=body)
        outcomes.append((response.status_code, response.json()))
    outcomes.append((client.post("/api/v1/trash", json={"id": plain}).status_code, {}))
    for status, body in outcomes:
        assert status in (404, 405, 409, 422), (status, body)
    assert client.get("/api/v1/jobs").json()["total"] == 0  # nothing was queued
    assert (models.root / "checkpoints/sdxs.safetensors").exists() and (data_dir / "jobs.sqlite3").exists()
    assert not list(models.root.parent.rglob("*.json"))  # no preset was written anywhere


def test_a_download_from_a_repository_subfolder_lands_by_its_file_name(client: TestClient) -> None:
    body = {"repo_id": "Comfy-Org/x", "filename": "split_files/vae/ae.safetensors", "role": "vae"}
    response = client.post("/api/v1/models/download", json=body)
    assert response.status_code == 409  # vae/ae.safetensors is in the library already
    body["filename"] = "split_files/vae/other.safetensors"
    job = client.post("/api/v1/models/download", json=body).json()
    assert job["kind"] == "download" and job["params"]["folder"] == "vae"
    client.post(f"/api/v1/jobs/{job['id']}/cancel")
