"""The generation lane's dispatcher: a thread that runs queued jobs through the engine, one at a time.

It owns the job lifecycle drawn in `jobs.store`: it marks jobs running, turns engine events into job events and live
progress, and records how each job ended. Writing a job's outputs (waiting for its model's hash, encoding, saving)
happens on a finisher thread, so the engine starts the next job meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sdrest import images
from sdrest.engine import messages as m
from sdrest.engine.errors import Cancelled, EngineCrashed, EngineUnavailable, GenerationFailed
from sdrest.engine.protocol import Engine, EngineEvent
from sdrest.jobs.events import EventHub
from sdrest.jobs.files import JobFiles
from sdrest.jobs.hasher import ModelHasher
from sdrest.jobs.lane import Lane
from sdrest.jobs.lifecycle import Lifecycle
from sdrest.jobs.live import LiveState
from sdrest.jobs.store import CANCELLED, COMPLETED, FAILED, RUNNING, JobRecord, JobStore, Observer
from sdrest.library.catalog import Catalog
from sdrest.metrics import Metrics
from sdrest.specs import EngineSpec, OutputSpec, Txt2Img, Unload, Video

log = logging.getLogger("sdrest.jobs")


class Dispatcher:
    """Takes jobs from the generation lane and runs them on the engine. `engine_lock` is held while a job uses the
    engine, so housekeeping never unloads a model under a starting job."""

    def __init__(
        self,
        lane: Lane,
        store: JobStore,
        engine: Engine,
        hub: EventHub,
        live: LiveState,
        files: JobFiles,
        hasher: ModelHasher,
        catalog: Catalog,
        observe: Observer,
        metrics: Metrics | None = None,
    ) -> None:
        self.lane, self.store, self.engine, self.hub = lane, store, engine, hub
        self.live, self.files, self.hasher, self.catalog = live, files, hasher, catalog
        self.metrics = metrics
        self.life = Lifecycle(store, hub, live, observe)
        self.engine_lock = threading.Lock()
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdrest-finisher")
        # job id -> (set when a cancel asks it to stop, set when it is recorded)
        self._finishing: dict[str, tuple[threading.Event, threading.Event]] = {}
        self._finishing_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="sdrest-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop dispatching; a running job is interrupted and will be queued again at the next start. Jobs whose
        images are made are written out first."""
        self.lane.stop()
        self.engine.close()
        self._thread.join(timeout=10)
        self._finisher.shutdown(wait=True)

    def cancel_finishing(self, job_id: str, timeout: float = 5.0) -> bool:
        """Cancel a job whose images are being written, and wait until its end is recorded; True if it was such a
        job (it may have completed before the cancel could stop it)."""
        with self._finishing_lock:
            flags = self._finishing.get(job_id)
        if flags is None:
            return False
        cancel, recorded = flags
        cancel.set()
        recorded.wait(timeout)
        return True

    def _loop(self) -> None:
        self.lane.serve(self._run, self._failed, self._publish_positions)

    def _failed(self, job_id: str) -> None:
        job = self.store.get(job_id)
        if job is not None and job.status == RUNNING:
            self._finish(job, FAILED, error={"code": "internal_error", "message": "internal error"})

    def _publish_positions(self) -> None:
        for index, job_id in enumerate(self.lane.queued(), start=1):
            if self.hub.has_subscribers(job_id):
                self.hub.publish(job_id, "queued", {"position": index})

    def _run(self, job_id: str) -> None:
        job = None if self.lane.stopping else self.life.begin(job_id)
        if job is None:
            return
        if isinstance(job.spec, Unload):
            with self.engine_lock:
                self.engine.stop()
            self._finish(job, COMPLETED)
            return
        spec = job.spec
        assert isinstance(spec, EngineSpec), f"{job.kind} does not run on the generation lane"
        tracker = _Tracker(self.hub, self.live, job, self.metrics)
        try:
            with self.engine_lock:
                done = self.engine.run(job_id, spec, tracker.on_event)
        except (Cancelled, EngineCrashed) as e:
            if self.lane.stopping:
                # Stopped by the server's shutdown, not by a client or a crash: the job stays "running" in the
                # store, and the next start queues it again.
                return
            if isinstance(e, Cancelled):
                self._finish(job, CANCELLED)
                return
            if e.while_loading:
                self.catalog.mark_crashed(spec.model.plan.values(), f"it crashed the engine while loading ({e.signal})")
            details = {"signal": e.signal, "while_loading": e.while_loading, "log": e.log_tail}
            self._finish(job, FAILED, error={"code": "engine_crashed", "message": str(e), "details": details})
        except GenerationFailed as e:
            self._finish(job, FAILED, error={"code": e.code, "message": str(e)})
        except EngineUnavailable as e:
            self._finish(job, FAILED, error={"code": "engine_unavailable", "message": str(e)})
        else:
            flags = threading.Event(), threading.Event()
            with self._finishing_lock:
                self._finishing[job_id] = flags
            self._finisher.submit(self._complete, job, done, *flags)

    def _complete(self, job: JobRecord, done: m.Done, cancelled: threading.Event, recorded: threading.Event) -> None:
        """Write the job's images with their infotexts, then mark it completed (on the finisher thread)."""
        try:
            spec = job.spec
            assert isinstance(spec, EngineSpec)
            model = spec.model

            def hashing(read: int, total: int) -> None:
                self.hub.publish(job.id, "hashing", {"model": model.name, "done": read, "total": total})

            # Only images and videos record their model's hash (an upscale names its upscaler; a load makes nothing).
            wants_hash = isinstance(job.spec, Txt2Img | Video)
            model_hash = self.hasher.autov2(model.path, hashing) if wants_hash else None
            if cancelled.is_set():
                self._finish(job, CANCELLED)
                return
            if self.lane.stopping and model_hash is None and wants_hash:
                return  # shutting down while hashing: the job is queued again at the next start
            if isinstance(spec, OutputSpec):
                job.outputs = self.files.save(job, spec, done.images, model_hash)
            job.timings = {k: round(v, 3) for k, v in done.timings.items()}
            self._finish(job, COMPLETED)
        except Exception:
            log.exception("job %s: writing its outputs failed", job.id)
            self._finish(job, FAILED, error={"code": "internal_error", "message": "the outputs could not be written"})
        finally:
            with self._finishing_lock:
                self._finishing.pop(job.id, None)
            recorded.set()

    def _finish(self, job: JobRecord, status: str, error: dict[str, Any] | None = None) -> None:
        self.life.end(job, status, error)


class _Tracker:
    """Turns one job's engine events into live progress and job events."""

    def __init__(self, hub: EventHub, live: LiveState, job: JobRecord, metrics: Metrics | None) -> None:
        self.hub, self.live, self.job_id, self.metrics = hub, live, job.id, metrics
        self.model = getattr(getattr(job.spec, "model", None), "name", "")
        self.started = time.monotonic()
        self.first = True
        self.images = getattr(job.spec, "batch_count", 1)
        self.image = 1
        self.last_step = 0
        self.loading = False

    def on_event(self, event: EngineEvent) -> None:
        match event:
            case m.Loading():
                self.loading = True
                self.hub.publish(self.job_id, "loading", {})
            case m.Loaded(seconds=seconds):
                self.loading = False
                self.hub.publish(self.job_id, "loaded", {"seconds": round(seconds, 3)})
                if self.metrics is not None:
                    self.metrics.loaded(self.model, seconds)
            case m.Progress(step=step, steps=steps, seconds_per_step=speed) if not self.loading:
                self._progress(step, steps, speed)
            case m.PreviewImage(step=step, jpeg=jpeg):
                self.live.set_preview(self.job_id, step, jpeg)
                self.hub.publish(self.job_id, "preview", {"step": step, "image": images.jpeg_data_url(jpeg)})

    def _progress(self, step: int, steps: int, seconds_per_step: float) -> None:
        if step == 0:
            return  # sd.cpp announces each sampling run with a step 0 before the first real step
        if step < self.last_step and self.image < self.images:
            self.image += 1  # sd.cpp samples a batch image after image, each from step 1
        self.last_step = step
        done = (self.image - 1) * steps + step
        total = self.images * steps
        speed = 1.0 / seconds_per_step if seconds_per_step > 0 else None
        progress = {
            "step": step,
            "steps": steps,
            "image": self.image,
            "images": self.images,
            "fraction": round(done / total, 4) if total else 0.0,
            "it_per_s": round(speed, 3) if speed else None,
            "eta_seconds": round((total - done) * seconds_per_step, 2) if seconds_per_step > 0 else None,
        }
        self.live.set_progress(self.job_id, progress)
        self.hub.publish(self.job_id, "progress", progress)
        if self.metrics is not None:
            self.metrics.step(self.model, time.monotonic() - self.started if self.first else None, speed)
            self.first = False
