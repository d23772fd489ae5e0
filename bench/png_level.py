"""Benchmark: the PNG compression level for outputs — encoding time and size at each zlib level, on images like
the ones sdrest writes (photo-like: smooth regions, edges and sensor-like noise; and the pure noise of the test
fixtures), at 512² and 1024². The baseline is Pillow's default level (6) in the same run.

    .venv/bin/python bench/png_level.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image, ImageFilter

LEVELS = (1, 3, 4, 6, 9)


def photo_like(side: int, seed: int = 0) -> Image.Image:
    """Smooth shapes and gradients with edges, plus mild per-pixel noise, as a diffusion model's outputs have."""
    rng = np.random.default_rng(seed)
    fractal = Image.effect_mandelbrot((side, side), (-2.0, -1.2, 0.8, 1.2), 200).filter(ImageFilter.GaussianBlur(3))
    base = np.asarray(fractal, dtype=np.float32)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) / side
    rgb = np.stack([base * (0.6 + 0.4 * xs), base * 0.8 + 60 * ys, 255 - base * 0.7], axis=-1)
    rgb += rng.normal(0, 3, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def noise(side: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8), "RGB")


def encode(image: Image.Image, level: int) -> tuple[float, int]:
    buffer = io.BytesIO()
    start = time.perf_counter()
    image.save(buffer, format="PNG", compress_level=level)
    return time.perf_counter() - start, buffer.tell()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for kind, make in (("photo-like", photo_like), ("noise", noise)):
        for side in (512, 1024):
            image = make(side)
            results = {}
            for level in LEVELS:
                runs = [encode(image, level) for _ in range(args.repeat)]
                results[level] = (statistics.median(t for t, _ in runs), runs[0][1])
            base_t, base_size = results[6]
            for level, (t, size) in results.items():
                print(
                    f"{kind:10s} {side:4d}² level {level}: {t * 1000:7.1f} ms ({t / base_t:4.2f}x level 6), "
                    f"{size / 1024:7.0f} KiB ({size / base_size:4.2f}x)"
                )


if __name__ == "__main__":
    main()
