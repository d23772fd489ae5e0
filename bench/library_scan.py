"""Benchmark: scanning a library of 1,000 model files, cold (every header read) and warm (cache only).

    .venv/bin/python bench/library_scan.py [--files 1000]

Prints both times and their ratio; the target is a warm rescan under one second. The files are real safetensors
copies of the TAESD and LoRA fixtures' headers with sparse data, spread over typed folders.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdrest.library.catalog import Catalog  # noqa: E402
from tests.fixtures import real  # noqa: E402


def _make_library(root: Path, count: int) -> None:
    sources = [real.build("taesd"), real.build("lora-sd1-kohya-r4"), real.build("vae-sd1-dec32")]
    folders = ["taesd", "lora", "vae"]
    for i in range(count):
        kind = i % len(sources)
        target = root / folders[kind] / f"sub{i % 7}" / f"model-{i:04d}.safetensors"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.hardlink_to(sources[kind])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        _make_library(root, args.files)
        cold, warm = [], []
        for i in range(args.repeat):
            catalog = Catalog(root, Path(tmp) / f"cache{i}.sqlite3")
            start = time.perf_counter()
            entries = catalog.scan()
            cold.append(time.perf_counter() - start)
            assert len(entries) == args.files
            start = time.perf_counter()
            catalog.scan()
            warm.append(time.perf_counter() - start)
    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    print(f"files: {args.files}")
    print(f"cold scan (reads every header): median {cold_s:.3f} s")
    print(f"warm rescan (nothing changed):  median {warm_s:.3f} s  (target < 1 s: {'ok' if warm_s < 1 else 'MISSED'})")
    print(f"warm/cold ratio: {warm_s / cold_s:.3f}")


if __name__ == "__main__":
    main()
