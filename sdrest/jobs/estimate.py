"""About how long a job will take, from the timings of past jobs of the same model.

A job's work is its steps times its megapixels times its images (or latent frames). The most recent past jobs of the
model give seconds as a line over that work — a fixed part (text encoding, the VAE, the pipe) plus a part per unit —
fitted by least squares once they differ in work, else the seconds per unit of the one size seen; and the loads they
paid, whose median is the load estimate. It follows the machine as it is now (a new GPU, other options) without a
model of each architecture's speed.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from sdrest.jobs.store import COMPLETED, JobRecord
from sdrest.specs import EngineSpec, Img2Img, Txt2Img, Upscale, Video

RECENT = 20  # past jobs that make an estimate


def work(spec: EngineSpec) -> float | None:
    """Steps × megapixels × images (frames for a video); None for kinds without sampling steps."""
    if isinstance(spec, Video):
        return spec.steps * spec.width * spec.height / 1e6 * (1 + (spec.frames - 1) // 4)
    if isinstance(spec, Txt2Img):
        steps = spec.steps * (spec.strength if isinstance(spec, Img2Img) else 1.0)
        return max(steps, 1) * spec.width * spec.height / 1e6 * spec.batch_count
    if isinstance(spec, Upscale):
        return 1.0
    return None


def _same_kind(a: EngineSpec, b: EngineSpec) -> bool:
    return isinstance(a, Upscale) == isinstance(b, Upscale) and isinstance(a, Video) == isinstance(b, Video)


def estimate(spec: EngineSpec, past: Iterable[JobRecord], loaded: bool) -> dict[str, Any]:
    """Seconds to load and to generate, each None when no past job of this model tells; `jobs` says how many did."""
    units = work(spec)
    points: list[tuple[float, float]] = []  # (work, seconds)
    loads: list[float] = []
    for job in past:
        other = job.spec
        if job.status != COMPLETED or not isinstance(other, EngineSpec) or other.model.name != spec.model.name:
            continue
        if not _same_kind(spec, other):
            continue
        if job.timings.get("load"):
            loads.append(job.timings["load"])
        done = work(other)
        if done and "generate" in job.timings and len(points) < RECENT:
            points.append((done, job.timings["generate"]))
    generate = round(_predict(points, units), 2) if points and units else None
    load = 0.0 if loaded else (round(statistics.median(loads[:RECENT]), 2) if loads else None)
    total = round(load + generate, 2) if load is not None and generate is not None else None
    return {"load": load, "generate": generate, "total": total, "jobs": len(points)}


def _predict(points: list[tuple[float, float]], units: float) -> float:
    """Seconds for `units` of work: a least-squares line (fixed part and slope, neither negative) through the points
    once they differ in work, else proportional to the median seconds per unit."""
    if len({round(w, 9) for w, _ in points}) > 1:
        fit = statistics.linear_regression([w for w, _ in points], [s for _, s in points])
        slope, fixed = max(fit.slope, 0.0), max(fit.intercept, 0.0)
        if slope > 0:
            return fixed + slope * units
    return statistics.median(s / w for w, s in points) * units
