"""The jobs layer's front: submit, look up, cancel and delete jobs, and what is running now.

It wires the pieces that each do one thing: `Lane` (order and positions), `Dispatcher` (runs jobs on the engine),
`Housekeeper` (idle unload, retention), `ModelHasher` (the side lane for model hashes), `JobFiles` and `JobStore`.
Every method may do SQLite or file I/O: the API calls them from threads, never on the event loop.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sdrest.engine.protocol import Engine
from sdrest.jobs.dispatcher import Dispatcher
from sdrest.jobs.errors import Expired, NoSuchJob, WrongState
from sdrest.jobs.events import EventHub
from sdrest.jobs.files import JobFiles
from sdrest.jobs.hasher import ModelHasher
from sdrest.jobs.housekeeping import Housekeeper
from sdrest.jobs.lane import Lane
from sdrest.jobs.live import LiveState
from sdrest.jobs.store import CANCELLED, FINISHED, JobRecord, JobStore, Observer, OutputFile
from sdrest.jobs.tasks import TaskDispatcher
from sdrest.library.catalog import Catalog
from sdrest.metrics import Metrics
from sdrest.settings import Settings
from sdrest.specs import TASK_KINDS, Txt2Img, Video

log = logging.getLogger("sdrest.jobs")


class JobQueue:
    def __init__(
        self,
        store: JobStore,
        engine: Engine,
        hub: EventHub,
        catalog: Catalog,
        settings: Settings,
        metrics: Metrics | None = None,
    ) -> None:
        self.store, self.engine, self.hub, self.catalog, self.settings = store, engine, hub, catalog, settings
        self.observers: list[Observer] = []  # told when a job starts and ends (metrics, webhooks)
        self.files = JobFiles(settings.data_dir / "outputs")
        self.lane = Lane(settings.queue_size)
        self.live = LiveState()
        self.hasher = ModelHasher(catalog)
        self.dispatcher = Dispatcher(
            self.lane, store, engine, hub, self.live, self.files, self.hasher, catalog, self._observe, metrics
        )
        self.housekeeper = Housekeeper(settings, engine, self.dispatcher.engine_lock, store, self.files)
        self.task_lane = Lane(settings.queue_size)
        self.tasks = TaskDispatcher(self.task_lane, store, hub, self.live, catalog, settings, self._observe)

    # -- lifecycle --------------------------------------------------------------------------------------------------

    def start(self) -> None:
        for job in self.store.recover():
            log.warning("job %s was running when the server stopped: now %s", job.id, job.status)
        queued = self.store.queued()
        self.lane.restore(job.id for job in queued if job.kind not in TASK_KINDS)
        self.task_lane.restore(job.id for job in queued if job.kind in TASK_KINDS)
        self.hasher.start()
        self.dispatcher.start()
        self.tasks.start()
        self.housekeeper.start()

    def stop(self) -> None:
        """Stop dispatching; a running job is interrupted and will be queued again at the next start."""
        self.housekeeper.stop()
        self.hasher.stop()
        self.tasks.stop()
        self.dispatcher.stop()

    # -- requests from the API --------------------------------------------------------------------------------------

    def submit(self, job: JobRecord) -> int:
        """Store and queue a job on its lane; returns its position (1 = next). Raises QueueFull."""
        lane = self._lane(job.kind)
        lane.reserve()
        try:
            self.store.add(job)
        except BaseException:
            lane.release()
            raise
        position = lane.push(job.id)
        self.hub.publish(job.id, "queued", {"position": position})
        if isinstance(job.spec, Txt2Img | Video):
            self.hasher.request(job.spec.model.path)  # the infotext's model hash, ready by the time the images are
        return position

    def get(self, job_id: str, viewer: str | None = None) -> JobRecord:
        """The job. Raises NoSuchJob (also for a job that retention removed: the job is gone, its id unknown, and
        for another user's job when `viewer` names who asks: to them it does not exist)."""
        job = self.store.get(job_id)
        if job is None or (viewer is not None and job.owner != viewer):
            raise NoSuchJob(f"no job {job_id}")
        return job

    def output(self, job_id: str, filename: str, viewer: str | None = None) -> tuple[JobRecord, OutputFile, Path]:
        """An output file of a job. Raises NoSuchJob, or Expired for files that retention (or a person) removed."""
        job = self.store.get(job_id)
        if job is not None and viewer is not None and job.owner != viewer:
            raise NoSuchJob(f"no job {job_id}")
        if job is None:
            expired = self.store.expired_at(job_id)
            if expired is not None:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(expired))
                raise Expired(f"the outputs of job {job_id} were removed by retention on {when}")
            raise NoSuchJob(f"no job {job_id}")
        output, path = self.files.output(job, filename)
        return job, output, path

    def _observe(self, job: JobRecord, event: str) -> None:
        for observer in self.observers:
            try:
                observer(job, event)
            except Exception:  # an observer must never break the queue
                log.exception("a job observer failed on %s %s", job.id, event)

    def _lane(self, kind: str) -> Lane:
        """Model-management tasks run on the side lane, everything else on the generation lane."""
        return self.task_lane if kind in TASK_KINDS else self.lane

    def owned_by(self, owner: str, job_ids: list[str | None]) -> set[str]:
        """Which of these jobs belong to `owner`."""
        found = (self.store.get(job_id) for job_id in job_ids if job_id)
        return {job.id for job in found if job is not None and job.owner == owner}

    def position(self, job_id: str) -> int | None:
        position = self.lane.position(job_id)
        return position if position is not None else self.task_lane.position(job_id)

    def progress(self, job_id: str) -> dict[str, Any] | None:
        return self.live.progress(job_id)

    def preview(self, job_id: str) -> tuple[int, bytes] | None:
        return self.live.preview(job_id)

    def snapshot(self) -> dict[str, Any]:
        running = self.lane.running
        progress = self.live.progress(running) if running else None
        return {"running": running, "queued": self.lane.queued(), "progress": progress}

    def cancel(self, job_id: str, viewer: str | None = None) -> JobRecord:
        """Cancel a queued job at once, or stop the worker running it. Raises NoSuchJob / WrongState."""
        job = self.get(job_id, viewer)
        if job.status in FINISHED:
            raise WrongState(f"job {job_id} is already {job.status}")
        lane = self._lane(job.kind)
        if lane.remove(job_id):
            job.status, job.finished_at = CANCELLED, time.time()
            self.store.save(job)
            self.hub.publish(job_id, "cancelled", {})
            self._observe(job, "cancelled")
            for index, queued in enumerate(lane.queued(), start=1):
                if self.hub.has_subscribers(queued):
                    self.hub.publish(queued, "queued", {"position": index})
            return job
        if lane is self.task_lane:
            self.tasks.cancel(job_id)
            self.task_lane.wait_until_not_running(job_id, timeout=10)
        elif not self.dispatcher.cancel_finishing(job_id):
            self.engine.cancel(job_id)
            # The dispatcher records the outcome, then lets go of the job: wait for that so the caller sees the end.
            self.lane.wait_until_not_running(job_id, timeout=5)
            self.dispatcher.cancel_finishing(job_id)  # its images were made just before the cancel landed
        return self.store.get(job_id) or job

    def delete(self, job_id: str, viewer: str | None = None) -> None:
        """Remove a finished job and its files. Raises NoSuchJob / WrongState."""
        job = self.get(job_id, viewer)
        if job.status not in FINISHED:
            raise WrongState(f"job {job_id} is {job.status}; cancel it first")
        self.files.remove(job_id)
        self.store.delete(job_id)

    def apply_retention(self) -> None:
        self.housekeeper.apply_retention()

    def loaded_plan(self) -> dict[str, str] | None:
        """The loading plan of the model in memory, if any (a request without a model uses it)."""
        return self.engine.loaded
