"""The HTTP API over a fake engine: the contract, validation, the queue's semantics, SSE, the error shape."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from sdrest.app import create_app
from sdrest.settings import load_settings
from tests.conftest import Library
from tests.fakes import FakeEngine, make_spec


@pytest.fixture
def flux_models(library: Library) -> Library:
    library.add("flux-tiny-diffusion-model", "diffusion_models/flux-tiny.safetensors")
    library.add("vae-flux-16ch", "vae/ae.safetensors")
    library.add("clip-l-text-encoder", "text_encoders/clip_l.safetensors")
    library.add("lora-sd1-kohya-r4", "lora/pixel.safetensors")
    return library


def make_client(library: Library, data_dir: Path, engine: FakeEngine, **settings: Any) -> TestClient:
    config = load_settings({"models_dir": library.root, "data_dir": data_dir, **settings}, env={})
    return TestClient(create_app(config, engine=engine))  # type: ignore[arg-type]


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def client(flux_models: Library, data_dir: Path, engine: FakeEngine) -> Iterator[TestClient]:
    with make_client(flux_models, data_dir, engine, queue_size=3) as client:
        yield client


def wait_for(
    client: TestClient,
    job_id: str,
    statuses: tuple[str, ...] = ("completed", "failed", "cancelled"),
    timeout: float = 10,
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} stuck: {job}")


FAST = {"prompt": "a cat", "width": 64, "height": 64, "steps": 2}


def test_generate_returns_202_with_links_and_completes(client: TestClient) -> None:
    response = client.post("/api/v1/generate", json=FAST)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["position"] >= 0
    assert body["links"] == {"self": f"/api/v1/jobs/{body['id']}", "events": f"/api/v1/jobs/{body['id']}/events"}
    assert response.headers["location"] == body["links"]["self"]
    job = wait_for(client, body["id"])
    assert job["status"] == "completed"
    assert job["params"]["seed"] >= 0  # the real seed is recorded
    assert job["params"]["cfg_scale"] == 1.0  # Flux's default
    (output,) = job["outputs"]
    image = client.get(output["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (64, 64)
    thumb = client.get(output["url"] + "?thumb=1&size=32")
    assert Image.open(io.BytesIO(thumb.content)).size == (32, 32)


def test_wait_with_accept_image_returns_the_image_and_headers(client: TestClient) -> None:
    response = client.post("/api/v1/generate?wait=true", json={**FAST, "seed": 7}, headers={"Accept": "image/png"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-seed"] == "7"
    assert response.headers["x-steps"] == "2"
    assert response.headers["x-cfg-scale"] == "1.0"
    assert response.headers["x-model"] == "diffusion_models/flux-tiny.safetensors"
    assert float(response.headers["x-generation-time"]) >= 0
    assert Image.open(io.BytesIO(response.content)).size == (64, 64)
    waited = client.post("/api/v1/generate?wait=true", json=FAST)
    assert waited.status_code == 200 and waited.json()["status"] == "completed"


def test_failed_job_with_wait_for_image_is_an_error(client: TestClient) -> None:
    response = client.post(
        "/api/v1/generate?wait=true", json={**FAST, "prompt": "crash"}, headers={"Accept": "image/png"}
    )
    assert response.status_code == 500
    assert response.json()["error"]["details"]["code"] == "engine_crashed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**FAST, "width": 100}, "$.width"),  # not a multiple of 16 for Flux
        ({**FAST, "height": 32}, "$.height"),
        ({**FAST, "width": 4096}, "$.width"),
        ({**FAST, "steps": 0}, "$.steps"),
        ({**FAST, "steps": 151}, "$.steps"),
        ({**FAST, "sampling_method": "warp"}, "$.sampling_method"),
        ({**FAST, "model": "nope"}, "$.model"),
        ({**FAST, "vae": "nope"}, "$.vae"),
        ({**FAST, "prompt": "a <lora:nope:1>"}, "$.prompt"),
        ({**FAST, "loras": [{"name": "nope"}]}, "$.loras[0].name"),
        ({**FAST, "loras": [{"name": "pixel", "weight": 99}]}, "$.loras[0].weight"),
        ({**FAST, "prompt": "x" * 10001}, "$.prompt"),
        ({**FAST, "batch_count": 9}, "$.batch_count"),
        ({**FAST, "colour": "red"}, "$.colour"),
        ({"width": 64}, "$.prompt"),
        ({**FAST, "seed": "42"}, "$.seed"),
    ],
)
def test_validation_names_the_field(client: TestClient, body: dict, field: str) -> None:
    response = client.post("/api/v1/generate", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["field"] == field, error


def test_lora_for_another_family_is_refused(client: TestClient) -> None:
    response = client.post("/api/v1/generate", json={**FAST, "prompt": "a <lora:pixel:0.8>"})
    assert response.status_code == 422
    assert "is for sd1 models" in response.json()["error"]["message"]


def test_error_shape_is_locked(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every error, whatever raised it, has exactly this shape and says what went wrong."""
    svc = client.app.state.services  # type: ignore[attr-defined]

    def broken(job_id: str) -> None:
        raise RuntimeError("a bug")

    cases = [
        (client.get("/api/v1/jobs/nope"), 404, "not_found", "no job nope", None),
        (client.get("/api/v1/no-such-route"), 404, "not_found", "Not Found", None),
        (client.post("/api/v1/generate", content=b"{not json"), 400, "bad_request", "the body is not valid JSON", None),
        (client.post("/api/v1/generate", json={"prompt": 5}), 422, "validation_error", "$.prompt: Expected `str`",
         "$.prompt"),
        (client.delete("/api/v1/generate"), 405, "method_not_allowed", "Method Not Allowed", None),
        (client.get("/api/v1/jobs?status=bogus"), 400, "bad_request", "status must be one of", "status"),
    ]  # fmt: skip
    monkeypatch.setattr(svc.queue, "get", broken)
    quiet = TestClient(client.app, raise_server_exceptions=False)  # the same running app, answering as a server would
    cases.append((quiet.get("/api/v1/jobs/x"), 500, "internal_error", "internal server error", None))
    for response, status, code, message, field in cases:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert set(body) == {"error"}
        assert set(body["error"]) <= {"code", "message", "field", "details"}
        assert body["error"]["code"] == code
        assert body["error"]["message"].startswith(message), body
        assert body["error"].get("field") == field, body


def test_body_size_limit(flux_models: Library, data_dir: Path, engine: FakeEngine) -> None:
    with make_client(flux_models, data_dir, engine, max_body_bytes=2048) as client:
        response = client.post("/api/v1/generate", json={**FAST, "prompt": "x" * 4000})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:
            yield b'{"prompt": "'
            yield b"y" * 4000
            yield b'"}'

        response = client.post("/api/v1/generate", content=chunks())  # no Content-Length: counted as it streams
        assert response.status_code == 413


def test_queue_full_is_429_and_queued_cancel_is_immediate(flux_models: Library, data_dir: Path) -> None:
    engine = FakeEngine(slow_seconds=0.2)
    with make_client(flux_models, data_dir, engine, queue_size=2) as client:
        running = client.post("/api/v1/generate", json={**FAST, "prompt": "slow", "steps": 50}).json()
        assert engine.started.wait(5)
        queued = [client.post("/api/v1/generate", json=FAST).json() for _ in range(2)]
        assert [q["position"] for q in queued] == [1, 2]
        full = client.post("/api/v1/generate", json=FAST)
        assert full.status_code == 429 and full.json()["error"]["code"] == "queue_full"
        cancelled = client.post(f"/api/v1/jobs/{queued[0]['id']}/cancel").json()
        assert cancelled["status"] == "cancelled"
        assert client.get(f"/api/v1/jobs/{queued[1]['id']}").json()["position"] == 1
        assert client.get("/api/v1/queue").json()["queued"] == [{"id": queued[1]["id"], "position": 1}]
        start = time.monotonic()
        stopped = client.post(f"/api/v1/jobs/{running['id']}/cancel").json()
        assert stopped["status"] == "cancelled" and time.monotonic() - start < 2
        assert wait_for(client, queued[1]["id"])["status"] == "completed"  # the next job runs normally
        assert queued[0]["id"] not in engine.ran
        again = client.post(f"/api/v1/jobs/{running['id']}/cancel")
        assert again.status_code == 409


def test_crash_fails_the_job_and_the_next_one_runs(client: TestClient) -> None:
    crashed = client.post("/api/v1/generate", json={**FAST, "prompt": "crash"}).json()
    after = client.post("/api/v1/generate", json=FAST).json()
    job = wait_for(client, crashed["id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "engine_crashed"
    assert job["error"]["details"]["signal"] == "SIGABRT"
    assert job["error"]["details"]["log"] == ["ggml.c:1 - GGML_ASSERT"]
    assert wait_for(client, after["id"])["status"] == "completed"
    assert client.get("/api/v1/health").json()["status"] == "ok"


def test_crash_while_loading_marks_the_model_broken(client: TestClient) -> None:
    job = client.post("/api/v1/generate", json={**FAST, "prompt": "crash-load"}).json()
    assert wait_for(client, job["id"])["error"]["details"]["while_loading"] is True
    again = client.post("/api/v1/generate", json=FAST)
    assert again.status_code == 422
    assert "marked broken" in again.json()["error"]["message"]


def test_sse_orders_progress_and_ends_with_completed(client: TestClient) -> None:
    job = client.post("/api/v1/generate", json={**FAST, "prompt": "slow", "steps": 3}).json()
    events = read_events(client, job["id"])
    types = [e["event"] for e in events]
    assert types[-1] == "completed"
    steps = [e["data"]["step"] for e in events if e["event"] == "progress"]
    assert steps == sorted(steps) and steps[-1] == 3
    ids = [e["id"] for e in events]
    assert ids == sorted(ids)
    late = read_events(client, job["id"])  # after the end: the current state, at once
    assert [e["event"] for e in late] == ["completed"]


def read_events(client: TestClient, job_id: str) -> list[dict]:
    events: list[dict] = []
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events?heartbeat=0.2") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict = {}
        for line in response.iter_lines():
            if line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif not line and current:
                events.append(current)
                current = {}
    return events


def test_jobs_list_filters_by_kind_model_and_prompt_text(
    flux_models: Library, data_dir: Path, engine: FakeEngine
) -> None:
    flux_models.add("sd1-sdxs", "checkpoints/sdxs.safetensors")
    with make_client(flux_models, data_dir, engine) as client:
        bodies = [
            {**FAST, "prompt": "A Lighthouse at dusk", "model": "flux-tiny"},
            {**FAST, "prompt": "a cat", "model": "sdxs"},
            {**FAST, "prompt": "lighthouse, sdxs", "model": "sdxs"},
        ]
        ids = [client.post("/api/v1/generate", json=b).json()["id"] for b in bodies]
        for job_id in ids:
            wait_for(client, job_id)
        client.post("/api/v1/models/unload")

        def listed(query: str) -> list[str]:
            answer = client.get(f"/api/v1/jobs?{query}").json()
            assert answer["total"] == len(answer["jobs"])
            return [j["id"] for j in answer["jobs"]]

        assert listed("q=LIGHTHOUSE") == [ids[2], ids[0]]  # case ignored, newest first
        assert listed("model=checkpoints/sdxs.safetensors") == [ids[2], ids[1]]
        assert listed("model=checkpoints/sdxs.safetensors&q=lighthouse") == [ids[2]]
        assert listed("kind=txt2img&status=completed") == ids[::-1]
        assert len(listed("")) == 4 and listed("kind=unload") != []  # the unload is a job too
        assert listed("q=%25") == []  # no LIKE wildcards
        bad = client.get("/api/v1/jobs?kind=txt2img,paint")
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "kind"
        long = client.get("/api/v1/jobs?q=" + "x" * 1001)
        assert long.status_code == 400 and long.json()["error"]["field"] == "q"


def test_jobs_list_filter_paging_and_delete(client: TestClient) -> None:
    ids = [client.post("/api/v1/generate", json=FAST).json()["id"] for _ in range(3)]
    for job_id in ids:
        wait_for(client, job_id)
    listing = client.get("/api/v1/jobs?status=completed&limit=2").json()
    assert listing["total"] == 3 and [j["id"] for j in listing["jobs"]] == ids[::-1][:2]
    assert client.get("/api/v1/jobs?limit=2&offset=2").json()["jobs"][0]["id"] == ids[0]
    assert client.delete(f"/api/v1/jobs/{ids[0]}").status_code == 204
    assert client.get(f"/api/v1/jobs/{ids[0]}").status_code == 404


def test_output_names_cannot_traverse(client: TestClient) -> None:
    job = wait_for(client, client.post("/api/v1/generate", json=FAST).json()["id"])
    for name in ("..%2F..%2Fjobs.sqlite3", "../../jobs.sqlite3", "00-1.png"):
        response = client.get(f"/api/v1/jobs/{job['id']}/output/{name}")
        assert response.status_code == 404


def test_system_endpoints(client: TestClient) -> None:
    health = client.get("/api/v1/health").json()
    assert health["status"] == "ok" and "worker" in health and "queue" in health
    assert "euler_a" in client.get("/api/v1/samplers").json()["names"]
    assert "karras" in client.get("/api/v1/schedulers").json()["names"]
    assert client.get("/api/v1/limits").json()["max_side"] == 2048
    models = client.get("/api/v1/models").json()["models"]
    flux = next(m for m in models if m["name"] == "diffusion_models/flux-tiny.safetensors")
    assert flux["plan"]["vae_path"].endswith("vae/ae.safetensors")
    assert client.get("/api/v1/models?role=lora").json()["models"][0]["architecture"] == "lora_sd1"


def test_heartbeats_keep_a_quiet_stream_alive(flux_models: Library, data_dir: Path) -> None:
    engine = FakeEngine(slow_seconds=0.3)
    with make_client(flux_models, data_dir, engine) as client:
        job = client.post("/api/v1/generate", json={**FAST, "prompt": "slow"}).json()
        with client.stream("GET", f"/api/v1/jobs/{job['id']}/events?heartbeat=0.05") as response:
            lines = list(response.iter_lines())
        assert ": heartbeat" in lines
        assert "event: completed" in lines


def test_retention_deletes_old_jobs_and_their_files(flux_models: Library, data_dir: Path, engine: FakeEngine) -> None:
    with make_client(flux_models, data_dir, engine, retention_days=1) as client:
        old, new = (wait_for(client, client.post("/api/v1/generate", json=FAST).json()["id"]) for _ in range(2))
        svc = client.app.state.services  # type: ignore[attr-defined]
        record = svc.store.get(old["id"])
        record.finished_at -= 2 * 86400
        svc.store.save(record)
        svc.queue.apply_retention()
        assert client.get(f"/api/v1/jobs/{old['id']}").status_code == 404
        assert not (data_dir / "outputs" / old["id"]).exists()
        assert client.get(new["outputs"][0]["url"]).status_code == 200


def test_a_job_interrupted_twice_fails_instead_of_looping(tmp_path: Path) -> None:
    from sdrest.jobs.store import JobRecord, JobStore

    store = JobStore(tmp_path / "jobs.sqlite3")
    store.add(JobRecord(id="j", status="running", created_at=0.0, spec=make_spec(), attempts=1))
    assert [j.status for j in store.recover()] == ["queued"]
    job = store.get("j")
    assert job is not None
    job.status, job.attempts = "running", 2
    store.save(job)
    (failed,) = store.recover()
    assert failed.status == "failed" and failed.error is not None and failed.error["code"] == "interrupted"


def test_a_late_listener_gets_the_state_once_then_only_what_follows(flux_models: Library, data_dir: Path) -> None:
    engine = FakeEngine(slow_seconds=0.1)
    with make_client(flux_models, data_dir, engine) as client:
        job = client.post("/api/v1/generate", json={**FAST, "prompt": "slow", "steps": 6}).json()
        assert engine.started.wait(5)
        time.sleep(0.25)  # a few steps in
        events = read_events(client, job["id"])
        types = [e["event"] for e in events]
        assert types[0] == "started" and types.count("started") == 1
        assert types[-1] == "completed"
        assert client.get(f"/api/v1/jobs/{job['id']}/events?heartbeat=x").status_code == 400
