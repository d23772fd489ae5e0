"""Downloads as jobs over REST, against a local stand-in for the Hugging Face hub (`HF_ENDPOINT` points at it): a
normal download, one resumed after the connection drops, one cancelled, a checksum mismatch, the remote listing
and a starter pull. Each leaves exactly the right files behind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.conftest import Library
from tests.fakes import FakeEngine
from tests.fixtures import real
from tests.hub_standin import HubStandin
from tests.test_api import make_client, wait_for

REPO = "acme/pixel-lora"
LORA = real.build("lora-sd1-kohya-r4", weights=False).read_bytes()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandin]:
    files = {"loras/pixel.safetensors": LORA, "README.md": b"# pixel", "tokenizer.json": b"{}"}
    with HubStandin({REPO: files, "stabilityai/sd-turbo": {"sd_turbo.safetensors": b"not really a model"}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        yield hub


@pytest.fixture
def client(library: Library, data_dir: Path) -> Iterator[TestClient]:
    library.add("sd1-sdxs", "checkpoints/sdxs.safetensors")
    with make_client(library, data_dir, FakeEngine()) as client:
        yield client


def _library_files(library: Library) -> list[str]:
    return sorted(p.relative_to(library.root).as_posix() for p in library.root.rglob("*") if p.is_file())


def _download(client: TestClient, **body: object) -> dict:
    response = client.post("/api/v1/models/download", json={"repo_id": REPO, "filename": "loras/pixel.safetensors",
                                                             **body})  # fmt: skip
    assert response.status_code == 202, response.text
    return response.json()


def test_a_download_lands_in_the_folder_of_its_detected_role(
    client: TestClient, hub: HubStandin, library: Library, data_dir: Path
) -> None:
    job = wait_for(client, _download(client)["id"])
    assert job["status"] == "completed", job
    assert job["result"] == {"model": "lora/pixel.safetensors"}
    assert (library.root / "lora/pixel.safetensors").read_bytes() == LORA
    assert client.get("/api/v1/models/pixel").json()["role"] == "lora"
    assert not list((data_dir / "downloads").glob("*.part"))


def test_a_dropped_connection_is_resumed(client: TestClient, hub: HubStandin, library: Library) -> None:
    hub.drop_after, hub.drops = len(LORA) // 2, 1
    job = wait_for(client, _download(client, role="lora")["id"])
    assert job["status"] == "completed", job
    assert (library.root / "lora/pixel.safetensors").read_bytes() == LORA
    assert [r.range for r in hub.seen("cdn")] == [None, f"bytes={len(LORA) // 2}-"]


def test_a_cancelled_download_leaves_nothing(
    client: TestClient, hub: HubStandin, library: Library, data_dir: Path
) -> None:
    hub.slow = 0.02
    before = _library_files(library)
    job = _download(client, role="lora")
    deadline = time.monotonic() + 5
    while client.get(f"/api/v1/jobs/{job['id']}").json().get("progress") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    cancelled = client.post(f"/api/v1/jobs/{job['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert _library_files(library) == before
    assert not list((data_dir / "downloads").glob("*.part"))


def test_a_checksum_mismatch_fails_and_leaves_nothing(
    client: TestClient, hub: HubStandin, library: Library, data_dir: Path
) -> None:
    hub.wrong_sha256 = {(REPO, "loras/pixel.safetensors"): "0" * 64}
    before = _library_files(library)
    job = wait_for(client, _download(client)["id"])
    assert job["status"] == "failed" and "checksum mismatch" in job["error"]["message"]
    assert job["error"]["code"] == "download_failed"
    assert _library_files(library) == before
    assert not list((data_dir / "downloads").glob("*.part"))


def test_no_network_says_so(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    job = wait_for(client, _download(client)["id"])
    assert job["status"] == "failed" and "cannot reach" in job["error"]["message"]


def test_remote_lists_loadable_files(client: TestClient, hub: HubStandin) -> None:
    listing = client.get(f"/api/v1/models/remote?repo_id={REPO}").json()
    assert [(f["filename"], f["size"]) for f in listing["files"]] == [("loras/pixel.safetensors", len(LORA))]
    assert client.get("/api/v1/models/remote?repo_id=acme/nothing").status_code == 404


def test_pull_fetches_a_starter(client: TestClient, hub: HubStandin, library: Library) -> None:
    assert "sd-turbo" in [s["name"] for s in client.get("/api/v1/models/starters").json()["starters"]]
    pulled = client.post("/api/v1/models/pull", json={"name": "sd-turbo"}).json()
    (job,) = pulled["jobs"]
    assert wait_for(client, job["id"])["status"] == "completed"
    assert (library.root / "checkpoints/sd_turbo.safetensors").read_bytes() == b"not really a model"
    assert client.post("/api/v1/models/pull", json={"name": "sd-turbo"}).json()["jobs"] == []  # nothing missing
    assert client.post("/api/v1/models/pull", json={"name": "nope"}).status_code == 404


def test_sdrest_pull_on_the_command_line(hub: HubStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sdrest.cli import main

    args = ["--models-dir", str(tmp_path / "models"), "--data-dir", str(tmp_path / "data")]
    assert main(["pull", "sd-turbo", *args]) == 0
    assert (tmp_path / "models/checkpoints/sd_turbo.safetensors").exists()
    assert "sd-turbo is ready" in capsys.readouterr().out
    assert main(["pull", "nope", *args]) == 1
