"""Prometheus metrics: jobs by kind and outcome, queue length, job and first-step times and load times by model,
steps per second, worker starts and crashes by cause, HTTP requests by route template and status, output bytes.

One `Metrics` per server (its own registry, so tests and several apps never share counters). The jobs layer and
the supervisor call its small methods; `HttpMetrics` is the middleware; `GET /metrics` renders the registry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


class _OutputBytes:
    """Bytes of outputs on disk, measured when scraped (the outputs folder is walked on a scrape thread)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def collect(self) -> list[GaugeMetricFamily]:
        total = 0
        if self.root.is_dir():
            for folder, _dirs, files in os.walk(self.root):
                for name in files:
                    try:
                        total += os.stat(os.path.join(folder, name)).st_size
                    except OSError:
                        continue
        family = GaugeMetricFamily("sdrest_output_bytes", "Bytes of job inputs and outputs on disk")
        family.add_metric([], total)
        return [family]


class _WorkerStarts:
    """Worker processes started, as the engine counts them."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.status = status

    def collect(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily("sdrest_worker_starts", "Generation worker processes started")
        family.add_metric([], int(self.status().get("starts", 0)))
        return [family]


class Metrics:
    """Every metric of one server. The jobs layer calls `job_changed` (its job observer), `loaded` and `step`."""

    def __init__(self, outputs: Path) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Counter(
            "sdrest_jobs_total", "Jobs that ended, by kind and outcome", ["kind", "outcome"], registry=r
        )
        self.queue = Gauge("sdrest_queue_length", "Jobs waiting, by lane", ["lane"], registry=r)
        self.job_seconds = Histogram("sdrest_job_seconds", "From start to end of a completed job", ["kind", "model"],
                                     buckets=_SECONDS, registry=r)  # fmt: skip
        self.first_step = Histogram("sdrest_time_to_first_step_seconds", "From a job's start to its first step",
                                    ["model"], buckets=_SECONDS, registry=r)  # fmt: skip
        self.speed = Gauge("sdrest_steps_per_second", "Sampling speed of the last step", ["model"], registry=r)
        self.load = Histogram("sdrest_model_load_seconds", "Model load time", ["model"], buckets=_SECONDS, registry=r)
        self.crashes = Counter("sdrest_worker_crashes_total", "Worker deaths, by cause", ["cause"], registry=r)
        self.http = Counter("sdrest_http_requests_total", "HTTP requests, by method, route template and status",
                            ["method", "route", "status"], registry=r)  # fmt: skip
        self.http_seconds = Histogram("sdrest_http_request_seconds", "HTTP request duration (until the response "
                                      "starts)", ["method", "route"], registry=r)  # fmt: skip
        r.register(_OutputBytes(outputs))

    def watch_engine(self, status: Callable[[], dict[str, Any]]) -> None:
        self.registry.register(_WorkerStarts(status))

    def render(self, queued: dict[str, int]) -> bytes:
        for lane, length in queued.items():
            self.queue.labels(lane).set(length)
        return generate_latest(self.registry)

    def job_changed(self, job: Any, event: str) -> None:
        """A job started or ended (the queue's observer): count outcomes, time completed jobs, count crashes."""
        if event == "started":
            return
        self.jobs.labels(job.kind, event).inc()
        model = getattr(getattr(job.spec, "model", None), "name", "")
        if event == "completed" and job.started_at and job.finished_at:
            self.job_seconds.labels(job.kind, model).observe(job.finished_at - job.started_at)
        if event == "failed" and job.error and job.error.get("code") == "engine_crashed":
            self.crashes.labels(job.error.get("details", {}).get("signal", "unknown")).inc()

    def loaded(self, model: str, seconds: float) -> None:
        self.load.labels(model).observe(seconds)

    def step(self, model: str, since_start: float | None, steps_per_second: float | None) -> None:
        """A sampling step: the first of a job is timed from its start."""
        if since_start is not None:
            self.first_step.labels(model).observe(since_start)
        if steps_per_second:
            self.speed.labels(model).set(steps_per_second)
