"""The two moments every lane records the same way: a job starts (running, saved, announced, observed) and a job
ends (its status, error and end time saved, its live state cleared, the outcome announced and observed)."""

from __future__ import annotations

import time
from typing import Any

from sdrest.jobs.events import EventHub
from sdrest.jobs.live import LiveState
from sdrest.jobs.store import COMPLETED, QUEUED, RUNNING, JobRecord, JobStore, Observer


class Lifecycle:
    def __init__(self, store: JobStore, hub: EventHub, live: LiveState, observe: Observer) -> None:
        self.store, self.hub, self.live, self.observe = store, hub, live, observe

    def begin(self, job_id: str) -> JobRecord | None:
        """The job, now running; None if it is no longer queued (cancelled meanwhile)."""
        job = self.store.get(job_id)
        if job is None or job.status != QUEUED:
            return None
        job.status, job.started_at, job.attempts = RUNNING, time.time(), job.attempts + 1
        self.store.save(job)
        self.live.start(job_id)
        self.hub.publish(job_id, "started", {"started_at": job.started_at})
        self.observe(job, "started")
        return job

    def end(self, job: JobRecord, status: str, error: dict[str, Any] | None = None) -> None:
        job.status, job.finished_at, job.error = status, time.time(), error
        self.store.save(job)
        self.live.finish(job.id)
        data: dict[str, Any] = {}
        if status == COMPLETED:
            data = {"outputs": [o.filename for o in job.outputs], "timings": job.timings}
            if job.result:
                data["result"] = job.result
        elif error is not None:
            data = {"error": error}
        self.hub.publish(job.id, status, data)
        self.observe(job, status)
