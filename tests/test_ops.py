"""Operating sdrest: the metrics scrape parsed back with prometheus_client's parser, and webhooks delivered to a
local receiver (signed; a failing receiver that recovers gets the call again; the allow-list refuses targets)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from sdrest.auth.tokens import load_or_create_secret
from sdrest.jobs import webhooks
from tests.conftest import Library
from tests.fakes import FakeEngine
from tests.test_api import FAST, make_client, wait_for


class Receiver:
    """A webhook receiver on 127.0.0.1 that fails the first `failures` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = 500 if receiver.failures > 0 else 204
                receiver.failures -= 1
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.calls) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.calls) >= count, self.calls

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def models(library: Library) -> Library:
    library.add("flux-tiny-diffusion-model", "diffusion_models/flux-tiny.safetensors")
    library.add("vae-flux-16ch", "vae/ae.safetensors")
    library.add("clip-l-text-encoder", "text_encoders/clip_l.safetensors")
    return library


@pytest.fixture
def client(models: Library, data_dir: Path) -> Iterator[TestClient]:
    with make_client(models, data_dir, FakeEngine()) as client:
        yield client


def _families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_metrics_scrape_parses_back(client: TestClient) -> None:
    for _ in range(2):
        wait_for(client, client.post("/api/v1/generate", json=FAST).json()["id"])
    crashed = client.post("/api/v1/generate", json={**FAST, "prompt": "crash"}).json()
    wait_for(client, crashed["id"])
    client.get("/api/v1/jobs/nope")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = _families(response.text)
    jobs = {
        (s.labels["kind"], s.labels["outcome"]): s.value for s in families["sdrest_jobs"] if s.name.endswith("_total")
    }
    assert jobs[("txt2img", "completed")] == 2 and jobs[("txt2img", "failed")] == 1
    crashes = [s for s in families["sdrest_worker_crashes"] if s.name.endswith("_total")]
    assert crashes[0].labels == {"cause": "SIGABRT"} and crashes[0].value == 1
    http = {
        (s.labels["route"], s.labels["status"]) for s in families["sdrest_http_requests"] if s.name.endswith("_total")
    }
    assert ("/api/v1/jobs/{id}", "404") in http and ("/api/v1/generate", "202") in http
    assert not any("nope" in route for route, _ in http)  # templates, never raw paths
    seconds = [s for s in families["sdrest_job_seconds"] if s.name.endswith("_count")]
    assert seconds and seconds[0].value == 2 and seconds[0].labels["model"] == "diffusion_models/flux-tiny.safetensors"
    assert [s.value for s in families["sdrest_time_to_first_step_seconds"] if s.name.endswith("_count")][0] >= 2
    assert families["sdrest_output_bytes"][0].value > 0
    assert {s.labels["lane"] for s in families["sdrest_queue_length"]} == {"generation", "tasks"}


def test_metrics_need_an_admin_when_auth_is_on(models: Library, data_dir: Path) -> None:
    with make_client(models, data_dir, FakeEngine(), auth="api_key") as client:
        assert client.get("/metrics").status_code == 401


def test_a_webhook_is_signed_and_retried_until_the_receiver_recovers(client: TestClient, data_dir: Path) -> None:
    receiver = Receiver(failures=2)
    try:
        body = {**FAST, "webhook": {"url": receiver.url, "events": ["started", "completed"]}}
        job = wait_for(client, client.post("/api/v1/generate", json=body).json()["id"])
        receiver.wait(4)  # started (500, retried: 500, then 204), completed (204)
        secret = load_or_create_secret(data_dir / "webhook-secret")
        events = []
        for headers, payload in receiver.calls:
            assert webhooks.verify(secret, headers["x-sdrest-signature"], payload)
            assert not webhooks.verify(secret, headers["x-sdrest-signature"], payload + b" ")  # a changed body fails
            assert not webhooks.verify(b"another secret", headers["x-sdrest-signature"], payload)
            events.append(json.loads(payload)["event"])
        # two failed calls were retried (after a backoff, so the order varies), then both events arrived
        assert sorted(events)[:1] == ["completed"] and len(events) == 4 and set(events) == {"started", "completed"}
        final = next(json.loads(p) for _, p in receiver.calls if json.loads(p)["event"] == "completed")
        assert final["job"]["id"] == job["id"] and final["job"]["outputs"][0].endswith(".png")
    finally:
        receiver.close()


def test_a_receiver_that_is_not_http_holds_up_nothing() -> None:
    """A reply that is not HTTP used to end the sending thread; a retry waiting for its backoff used to hold up every
    later event. Now the bad one is retried later, and the good one goes out at once."""
    import socket

    garbage = socket.socket()
    garbage.bind(("127.0.0.1", 0))
    garbage.listen()

    def answer_garbage() -> None:
        while True:
            try:
                conn, _ = garbage.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"this is not HTTP\r\n\r\n")
            conn.close()

    threading.Thread(target=answer_garbage, daemon=True).start()
    good = Receiver()
    sender = webhooks.Sender(b"s" * 32, webhooks.AllowList("", loopback=True))
    sender.start()
    try:
        sender.send(f"http://127.0.0.1:{garbage.getsockname()[1]}/hook", "completed", {"n": 1})
        time.sleep(0.3)  # delivered and failed: its retry is due in RETRY_DELAYS[0]
        start = time.monotonic()
        sender.send(good.url, "completed", {"n": 2})
        good.wait(1, timeout=5)
        assert time.monotonic() - start < webhooks.RETRY_DELAYS[0] / 2
    finally:
        sender.stop()
        garbage.close()
        good.close()


def test_webhook_targets_must_be_allowed(models: Library, data_dir: Path) -> None:
    with make_client(models, data_dir, FakeEngine(), auth="api_key") as client:
        svc = client.app.state.services  # type: ignore[attr-defined]
        from tests.test_auth import _cli

        key = _cli(data_dir, "keys", "create", "w").strip()
        for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "ftp://example/x"):
            response = client.post("/api/v1/generate", json={**FAST, "webhook": {"url": url}},
                                   headers={"X-API-Key": key})  # fmt: skip
            assert response.status_code == 422, url
            assert response.json()["error"]["field"] == "$.webhook.url"
        assert svc.webhooks.delivered == 0
    allowed = webhooks.AllowList("127.0.0.0/8", loopback=False)
    allowed.check("http://127.0.0.1:9/x")
    with pytest.raises(webhooks.WebhookRefused):
        webhooks.AllowList("", loopback=False).check("http://127.0.0.1:9/x")
