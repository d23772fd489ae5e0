"""Benchmark: what the server adds on top of the bare binding, and how it answers while it generates.

    .venv/bin/python bench/overhead.py [--runs 3] [--models sdxs,sd1] [--pollers 50] [--poll-seconds 10]
    .venv/bin/python bench/overhead.py --instant [--jobs 400] [--clients 8] [--size 64]

`--instant`: the server's own cost per job, with a worker that answers at once (`bench/instant.py`): one client
sends `--jobs` `POST /generate?wait=true` PNG jobs one after the other (p50/p90/p99 per job; target p50 ≤ 5 ms), then
`--clients` clients send them concurrently (jobs/s; target ≥ 200). The baseline in the same run is
`GET /api/v1/health` on the same server, the floor of any request.

1. The same txt2img (256×256, 4 steps, fixed seed) `--runs` times through the bare binding (one process, model loaded
   once) and through a running `sdrest serve` (model loaded by a warm-up job, then `POST /generate?wait=true` timed
   at the client), alternating the two. Prints per-image medians and the ratio server/binding (target ≤ 1.02).
2. While a long generation runs, `--pollers` concurrent clients poll `GET /api/v1/health` and `GET /api/v1/jobs/{id}`,
   each every `--poll-interval` seconds (0: back to back); prints p50/p99 latency of each (target p99 < 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures import real  # noqa: E402

LAYOUTS = {"sdxs": "sd1-sdxs", "sd1": "sd1-full"}
JOB = {"prompt": "a lovely cat", "width": 256, "height": 256, "steps": 4, "cfg_scale": 7.0, "seed": 42}

# The bare binding: load once, then time one generate_image call per line read from stdin. The same arguments the
# worker passes (sd.cpp's automatic eta, all physical cores, the server's LoRA mode).
BARE = """
import json, sys, time
import stable_diffusion_cpp as sd
from stable_diffusion_cpp import stable_diffusion_cpp as low
path, job = sys.argv[1], json.loads(sys.argv[2])
model = sd.StableDiffusion(model_path=path, n_threads=int(low.sd_get_num_physical_cores()),
                           lora_apply_mode="at_runtime", verbose=False)
print("ready", flush=True)
for _ in sys.stdin:
    start = time.perf_counter()
    model.generate_image(prompt=job["prompt"], width=job["width"], height=job["height"], sample_steps=job["steps"],
                         cfg_scale=job["cfg_scale"], seed=job["seed"], sample_method="euler_a", eta=float("inf"))
    print(time.perf_counter() - start, flush=True)
"""


class Bare:
    """The bare binding in its own process, model loaded, generating on request."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", BARE, str(path), json.dumps(JOB)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def generate(self) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, models: Path, data: Path, instant: bool = False) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        args = [sys.executable, "-m", "sdrest", "serve", "--models-dir", str(models), "--data-dir", str(data)]
        if instant:
            args = [sys.executable, str(ROOT / "bench" / "instant.py"), "--models-dir", str(models),
                    "--data-dir", str(data), "--port", port]  # fmt: skip
        env = {**os.environ, "SDREST_PORT": port, "SDREST_LOG_LEVEL": "warning"}
        self.process = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/api/v1/health", timeout=1)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def generate(self, model: str, **extra: object) -> float:
        start = time.perf_counter()
        response = httpx.post(
            f"{self.url}/api/v1/generate?wait=true",
            json={**JOB, "model": model, **extra},
            headers={"Accept": "image/png"},
            timeout=600,
        )
        response.raise_for_status()
        return time.perf_counter() - start

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str) -> None:
    """One keep-alive HTTP/1.1 GET on an open connection (a client far lighter than httpx, so the numbers are the
    server's, not the load generator's)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await _answer(reader)


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str, body: bytes) -> bytes:
    """One keep-alive HTTP/1.1 POST of a JSON body asking for a PNG; the answer's body."""
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: image/png\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return await _answer(reader)


async def _answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length"))
    return await reader.readexactly(length)


async def instant_jobs(url: str, jobs: int, clients: int, body: bytes) -> tuple[list[float], float]:
    """`clients` connections each sending their share of `jobs` `?wait=true` PNG jobs back to back; the latency of
    each job and the wall time of all."""
    parsed = httpx.URL(url)
    host, port = parsed.host, parsed.port or 80
    latencies: list[float] = []

    async def one(count: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        for _ in range(count):
            start = time.perf_counter()
            png = await _post(reader, writer, f"{host}:{port}", "/api/v1/generate?wait=true", body)
            latencies.append(time.perf_counter() - start)
            assert png.startswith(b"\x89PNG"), png[:80]
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(one(jobs // clients + (i < jobs % clients)) for i in range(clients)))
    return latencies, time.perf_counter() - start


def run_instant(jobs: int, clients: int, size: int) -> None:
    """The server's own cost per job, with a worker that answers at once."""
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        real.build("sd1-full", directory=models / "checkpoints", filename="sd1.safetensors", weights=False)
        server = Server(models, Path(tmp) / "data", instant=True)
        body = json.dumps({"model": "sd1", "prompt": "a lovely cat", "width": size, "height": size, "steps": 1,
                           "seed": 42}).encode()  # fmt: skip
        try:
            asyncio.run(instant_jobs(server.url, 20, 1, body))  # warm-up: starts the worker
            health = asyncio.run(poll(server.url + "/api/v1/health", 1, 2.0, 0.0))
            serial, _ = asyncio.run(instant_jobs(server.url, jobs, 1, body))
            _, wall = asyncio.run(instant_jobs(server.url, jobs, clients, body))
        finally:
            server.stop()
    h50 = percentile(health, 0.5)
    print(f"instant engine, {size}x{size} PNG, ?wait=true, {jobs} jobs")
    print(f"baseline GET /health: p50 {h50 * 1000:.2f} ms")
    print(
        f"one client:  p50 {percentile(serial, 0.5) * 1000:.2f} ms, p90 {percentile(serial, 0.9) * 1000:.2f} ms, "
        f"p99 {percentile(serial, 0.99) * 1000:.2f} ms per job ({percentile(serial, 0.5) / h50:.1f}x a health check)"
        " | target p50 <= 5 ms"
    )
    print(f"{clients} clients: {jobs / wall:.0f} jobs/s | target >= 200")


async def poll(url: str, count: int, seconds: float, interval: float) -> list[float]:
    """`count` clients each GET `url` every `interval` seconds (0: back to back) for `seconds`; the latencies."""
    parsed = httpx.URL(url)
    host, port, path = parsed.host, parsed.port or 80, parsed.raw_path.decode()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def one(offset: float) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        await asyncio.sleep(offset)  # spread the clients over one interval
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await _get(reader, writer, f"{host}:{port}", path)
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - start)))
        writer.close()

    await asyncio.gather(*(one(interval * i / count) for i in range(count)))
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--models", default="sdxs,sd1")
    parser.add_argument("--pollers", type=int, default=50)
    parser.add_argument("--poll-seconds", type=float, default=10.0)
    parser.add_argument("--poll-interval", type=float, default=0.1, help="seconds between one poller's requests")
    parser.add_argument("--instant", action="store_true", help="the server's own cost, with an instant worker")
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    if args.instant:
        run_instant(args.jobs, args.clients, args.size)
        return
    names = args.models.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        folder = models / "checkpoints"
        paths = {n: real.build(LAYOUTS[n], directory=folder, filename=f"{n}.safetensors") for n in names}
        print(f"runs per model: {args.runs}, job: {JOB}")
        for name in names:
            bare, server = Bare(paths[name]), Server(models, Path(tmp) / f"data-{name}")
            try:
                server.generate(name)  # warm-up: loads the model
                binding, served = [], []
                # Alternate the two so that drift in the machine's speed hits both alike.
                for _ in range(args.runs):
                    binding.append(bare.generate())
                    served.append(server.generate(name))
            finally:
                bare.stop()
                server.stop()
            b, s = statistics.median(binding), statistics.median(served)
            print(f"{name:5s} bare binding median {b:7.3f} s/image | server {s:7.3f} s/image | ratio {s / b:.3f}")

        server = Server(models, Path(tmp) / "data-poll")
        try:
            server.generate(names[0], steps=1, width=64, height=64)  # warm-up
            long_job = {**JOB, "model": names[-1], "steps": 40}
            job_id = httpx.post(f"{server.url}/api/v1/generate", json=long_job).json()["id"]
            while httpx.get(f"{server.url}/api/v1/jobs/{job_id}").json()["status"] != "running":
                time.sleep(0.05)
            for label, url in (("health", "/api/v1/health"), ("job poll", f"/api/v1/jobs/{job_id}")):
                latencies = asyncio.run(poll(server.url + url, args.pollers, args.poll_seconds / 2, args.poll_interval))
                still = httpx.get(f"{server.url}/api/v1/jobs/{job_id}").json()["status"]
                print(
                    f"{label:8s} {args.pollers} pollers every {args.poll_interval * 1000:.0f} ms, {len(latencies)} "
                    f"requests while generating ({still}): "
                    f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
                )
            httpx.post(f"{server.url}/api/v1/jobs/{job_id}/cancel")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
