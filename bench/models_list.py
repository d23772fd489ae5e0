"""Benchmark: `GET /api/v1/models` on a library of 1,000 files, answered from cached plans.

    .venv/bin/python bench/models_list.py [--files 1000] [--requests 50]

The library mixes generating models (tiny Flux diffusion models, SD 1.x checkpoints) with their companions and LoRAs,
as header-only files. The baseline is the same listing computed afresh (every plan made again, as the route did before
plans were cached), in this process; the target is a p50 under 50 ms for the route.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.testclient import TestClient  # noqa: E402

from sdrest.app import create_app  # noqa: E402
from sdrest.settings import load_settings  # noqa: E402
from sdrest.views import describe  # noqa: E402
from tests.fakes import FakeEngine  # noqa: E402
from tests.fixtures import real  # noqa: E402

_KINDS = [
    ("flux-tiny-diffusion-model", "diffusion_models"),
    ("sd1-sdxs", "checkpoints"),
    ("vae-flux-16ch", "vae"),
    ("clip-l-text-encoder", "text_encoders"),
    ("lora-sd1-kohya-r4", "lora"),
    ("taesd", "taesd"),
]


def _make_library(root: Path, count: int) -> None:
    sources = [(real.build(layout, weights=False), folder) for layout, folder in _KINDS]
    for i in range(count):
        source, folder = sources[i % len(sources)]
        target = root / folder / f"sub{i % 7}" / f"model-{i:04d}.safetensors"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.hardlink_to(source)


def _p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        _make_library(root, args.files)
        settings = load_settings({"models_dir": root, "data_dir": Path(tmp) / "data"}, env={})
        with TestClient(create_app(settings, engine=FakeEngine())) as client:
            svc = client.app.state.services  # type: ignore[attr-defined]
            entries = svc.catalog.entries
            start = time.perf_counter()
            uncached = [describe(e, entries) for e in entries]
            baseline = time.perf_counter() - start
            start = time.perf_counter()
            first = client.get("/api/v1/models")
            first_s = time.perf_counter() - start
            assert first.status_code == 200 and len(first.json()["models"]) == len(uncached) == args.files
            times = []
            for _ in range(args.requests):
                start = time.perf_counter()
                response = client.get("/api/v1/models")
                times.append(time.perf_counter() - start)
                assert response.status_code == 200
    p50, p99 = statistics.median(times), _p(times, 0.99)
    print(f"files: {args.files}, requests: {args.requests}")
    print(f"baseline, every plan made afresh: {baseline * 1000:.0f} ms")
    print(f"first request after a scan (makes the plans): {first_s * 1000:.0f} ms")
    verdict = "ok" if p50 < 0.05 else "MISSED"
    print(f"cached: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms  (target p50 < 50 ms: {verdict})")
    print(f"cached p50 / baseline: {p50 / baseline:.3f}")


if __name__ == "__main__":
    main()
