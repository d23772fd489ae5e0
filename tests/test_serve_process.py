"""`sdrest serve` as a user runs it: a real process on a real port, reached with curl; killed and restarted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import Library

pytestmark = pytest.mark.binding


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, models: Path, data: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "sdrest", "serve", "--models-dir", str(models), "--data-dir", str(data)]
        self.env = {**os.environ, "SDREST_PORT": str(self.port), "SDREST_THREADS": "2"}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("the server did not come up")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


@pytest.fixture
def server(library: Library, data_dir: Path) -> Iterator[Server]:
    library.add_weights("sd1-sdxs", "checkpoints/sdxs.safetensors")
    server = Server(library.root, data_dir)
    server.start()
    yield server
    server.stop()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_gets_a_png(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    body = json.dumps({"prompt": "a lovely cat", "width": 64, "height": 64, "steps": 1, "seed": 3})
    result = subprocess.run(
        ["curl", "-sf", "-X", "POST", f"{server.url}/api/v1/generate?wait=true", "-H", "Content-Type: application/json",
         "-H", "Accept: image/png", "-d", body, "-o", str(out), "-D", "-"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "x-seed: 3" in result.stdout.lower()
    assert Image.open(out).size == (64, 64)


def test_jobs_queued_when_the_server_is_killed_complete_after_a_restart(server: Server) -> None:
    job = {"prompt": "a lovely cat", "width": 128, "height": 128, "steps": 6}
    ids = [httpx.post(f"{server.url}/api/v1/generate", json=job).json()["id"] for _ in range(3)]
    deadline = time.monotonic() + 60
    while httpx.get(f"{server.url}/api/v1/queue").json()["running"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    server.kill()
    server.start()
    deadline = time.monotonic() + 120
    statuses: list[str] = []
    while time.monotonic() < deadline:
        statuses = [httpx.get(f"{server.url}/api/v1/jobs/{i}").json()["status"] for i in ids]
        if all(s == "completed" for s in statuses):
            break
        time.sleep(0.2)
    assert statuses == ["completed"] * 3
