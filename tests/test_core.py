"""The core's seams and the defects a review found: each test here failed before its fix."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sdrest.engine.errors import Cancelled
from sdrest.engine.supervisor import Supervisor
from sdrest.jobs.events import EventHub
from sdrest.jobs.queue import JobQueue
from sdrest.jobs.store import JobRecord, JobStore
from sdrest.library import catalog as catalog_module
from sdrest.library.catalog import Catalog
from sdrest.settings import load_settings
from tests.conftest import Library
from tests.fakes import FakeEngine, make_spec
from tests.raw_http import raw_request
from tests.test_api import FAST, make_client, read_events, wait_for

SLOW_START = "tests.standin_worker:slow_start"


def test_an_unknown_job_is_named_in_the_error(client: TestClient) -> None:
    response = client.get("/api/v1/jobs/nope")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "no job nope"


def test_a_cancel_while_the_worker_starts_is_a_cancel() -> None:
    supervisor = Supervisor({}, entry=SLOW_START)
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(supervisor.run("job", make_spec(), lambda event: None))
        except Exception as e:
            outcome.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.3)
    assert supervisor.state == "starting"
    supervisor.cancel("job")
    thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled), outcome
    supervisor.close()


def test_a_cancel_before_the_worker_exists_stops_the_job() -> None:
    supervisor = Supervisor({}, entry=SLOW_START)
    supervisor.cancel("job")
    with pytest.raises(Cancelled):
        supervisor.run("job", make_spec(), lambda event: None)
    supervisor.close()


def test_a_shutdown_while_the_worker_starts_queues_the_job_again(tmp_path: Path) -> None:
    settings = load_settings({"data_dir": tmp_path, "models_dir": tmp_path / "models"}, env={})
    store = JobStore(tmp_path / "jobs.sqlite3")
    queue = JobQueue(
        store, Supervisor({}, entry=SLOW_START), EventHub(), Catalog(tmp_path / "m", tmp_path / "c"), settings
    )
    queue.start()
    job = JobRecord(id="a" * 32, status="queued", created_at=time.time(), spec=make_spec())
    queue.submit(job)
    deadline = time.monotonic() + 5
    while queue.engine.state != "starting" and time.monotonic() < deadline:
        time.sleep(0.02)
    queue.stop()
    recorded = store.get(job.id)
    assert recorded is not None and recorded.status == "running" and recorded.error is None
    assert [j.status for j in store.recover()] == ["queued"]


def test_the_stand_in_worker_runs_a_job_through_the_supervisor() -> None:
    supervisor = Supervisor({}, entry=SLOW_START)
    done = supervisor.run("job", make_spec(width=64, height=32), lambda event: None)
    assert [(i.width, i.height, len(i.pixels)) for i in done.images] == [(64, 32, 64 * 32 * 3)]
    supervisor.close()


def test_a_model_hash_never_holds_up_generation(
    flux_models: Library, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hash runs on its own lane: the engine starts at once, and the job reports the hash's progress."""
    real_sha256 = catalog_module.sha256_file

    def slow_sha256(path: Path, progress=None) -> str:  # type: ignore[no-untyped-def]
        for step in range(1, 5):
            time.sleep(0.3)
            if progress is not None:
                progress(step, 4)
        return real_sha256(path)

    monkeypatch.setattr(catalog_module, "sha256_file", slow_sha256)
    engine = FakeEngine()
    with make_client(flux_models, data_dir, engine) as client:
        started = time.monotonic()
        job = client.post("/api/v1/generate", json=FAST).json()
        assert engine.started.wait(5)
        assert time.monotonic() - started < 0.6  # the engine did not wait for the 1.2 s hash
        events = read_events(client, job["id"])
        hashing = [e["data"] for e in events if e["event"] == "hashing"]
        assert hashing and hashing[-1]["total"] == 4
        assert events[-1]["event"] == "completed"
        done = client.get(f"/api/v1/jobs/{job['id']}").json()
        image = client.get(done["outputs"][0]["url"]).content
        assert b"Model hash: " in image  # the infotext got its hash all the same


def test_outputs_removed_by_retention_or_by_hand_answer_410(flux_models: Library, data_dir: Path) -> None:
    with make_client(flux_models, data_dir, FakeEngine(), retention_days=1) as client:
        old, new = (wait_for(client, client.post("/api/v1/generate", json=FAST).json()["id"]) for _ in range(2))
        svc = client.app.state.services  # type: ignore[attr-defined]
        record = svc.store.get(old["id"])
        record.finished_at -= 2 * 86400
        svc.store.save(record)
        svc.queue.apply_retention()
        gone = client.get(old["outputs"][0]["url"])
        assert gone.status_code == 410 and "removed by retention" in gone.json()["error"]["message"]
        (data_dir / "outputs" / new["id"] / new["outputs"][0]["filename"]).unlink()
        assert client.get(new["outputs"][0]["url"]).status_code == 410


@pytest.fixture
def finished(client: TestClient) -> dict:
    return wait_for(client, client.post("/api/v1/generate", json=FAST).json()["id"])


@pytest.mark.parametrize(
    "name",
    [
        b"..",
        b"%2e%2e",
        b"..%2F..%2Fjobs.sqlite3",
        b"%2e%2e%2f%2e%2e%2fjobs.sqlite3",
        b"%2Fetc%2Fpasswd",
        b"/etc/passwd",
    ],
)
def test_output_names_cannot_leave_the_job_folder(client: TestClient, finished: dict, name: bytes) -> None:
    status, body = raw_request(client, "GET", f"/api/v1/jobs/{finished['id']}/output/".encode() + name)
    assert status == 404, body
    # The handler answered (not the router): the name reached it and was refused there.
    assert body["error"]["message"].startswith(f"job {finished['id']} has no output"), body


def test_a_symlink_out_of_the_job_folder_is_not_followed(client: TestClient, finished: dict, data_dir: Path) -> None:
    output = data_dir / "outputs" / finished["id"] / finished["outputs"][0]["filename"]
    output.unlink()
    output.symlink_to(data_dir / "jobs.sqlite3")
    response = client.get(finished["outputs"][0]["url"])
    assert response.status_code == 404
    assert b"SQLite" not in response.content


def test_the_fake_engine_starts_nothing_real(flux_models: Library, data_dir: Path) -> None:
    """With a fake engine, nothing probes or imports the binding (the binding is made unimportable here)."""
    code = f"""
import sys
sys.modules["stable_diffusion_cpp"] = None  # any import of the binding now fails
from starlette.testclient import TestClient
from sdrest.app import create_app
from sdrest.settings import load_settings
from tests.fakes import FakeEngine
engine = FakeEngine()
settings = load_settings({{"models_dir": {str(flux_models.root)!r}, "data_dir": {str(data_dir)!r}}}, env={{}})
with TestClient(create_app(settings, engine=engine)) as client:
    job = client.post("/api/v1/generate?wait=true", json={FAST!r}).json()
    assert job["status"] == "completed", job
    assert client.get("/api/v1/version").json()["binding"] == "fake"
assert engine.probes == 1
import subprocess
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_an_old_job_database_is_migrated(tmp_path: Path) -> None:
    """A 0.1 database (no schema version, `params`/`plan`/`loras` dicts) opens with its jobs as typed specs."""
    import sqlite3

    import msgspec

    db = sqlite3.connect(tmp_path / "jobs.sqlite3")
    db.executescript(
        """CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, status TEXT NOT NULL,
        created_at REAL NOT NULL, finished_at REAL, data BLOB NOT NULL);
        CREATE INDEX jobs_status ON jobs (status, seq);"""
    )
    old = {
        "id": "b" * 32, "kind": "txt2img", "status": "queued", "created_at": 1.0,
        "model": "checkpoints/sd15.safetensors", "architecture": "sd1", "plan": {"model_path": "/m/sd15.safetensors"},
        "loras": [["/m/lora/px.safetensors", 0.5]],
        "params": {"prompt": "a cat <lora:px:0.5>", "negative_prompt": "", "width": 64, "height": 64, "steps": 2,
                   "cfg_scale": 7.0, "guidance": 3.5, "sampling_method": "euler_a", "scheduler": None, "eta": None,
                   "seed": 5, "batch_count": 1, "clip_skip": -1, "output_format": "png"},
    }  # fmt: skip
    db.execute(
        "INSERT INTO jobs (id, status, created_at, data) VALUES (?, 'queued', 1.0, ?)",
        (old["id"], msgspec.json.encode(old)),
    )
    db.commit()
    db.close()
    store = JobStore(tmp_path / "jobs.sqlite3")
    assert store.version == 4
    (job,) = store.queued()
    assert job.kind == "txt2img" and job.spec.seed == 5 and job.spec.clean_prompt == "a cat"
    assert job.spec.model.plan == {"model_path": "/m/sd15.safetensors"}
    assert [(lora.path, lora.weight) for lora in job.spec.loras] == [("/m/lora/px.safetensors", 0.5)]
    assert store.expired_at("x") is None  # the v3 table exists


@pytest.fixture
def flux_models(library: Library) -> Library:
    from tests.test_api import flux_models as make

    return make.__wrapped__(library)  # type: ignore[attr-defined]


@pytest.fixture
def client(flux_models: Library, data_dir: Path):  # type: ignore[no-untyped-def]
    with make_client(flux_models, data_dir, FakeEngine()) as client:
        yield client
