"""The one generation queue: a dispatcher thread runs queued jobs in order through the engine, one at a time.

It owns the job lifecycle drawn in `jobs.store`: it marks jobs running, feeds the engine, turns engine messages into
job events, stores outputs, and records how each job ended. It also unloads an idle engine and applies retention.
"""

from __future__ import annotations

import base64
import collections
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from sdrest import __version__, images
from sdrest.engine.supervisor import Cancelled, EngineCrashed, EngineUnavailable, GenerationFailed, Supervisor
from sdrest.errors import Conflict, NotFound, QueueFull
from sdrest.jobs.events import EventHub
from sdrest.jobs.requests import LORA_TAG
from sdrest.jobs.store import CANCELLED, COMPLETED, FAILED, FINISHED, QUEUED, RUNNING, JobRecord, JobStore, OutputFile
from sdrest.library.architectures import ARCHITECTURES
from sdrest.library.catalog import Catalog, UnknownModel
from sdrest.settings import Settings

log = logging.getLogger("sdrest.jobs")
RETENTION_EVERY = 3600.0


class JobQueue:
    def __init__(
        self, store: JobStore, engine: Supervisor, hub: EventHub, catalog: Catalog, settings: Settings
    ) -> None:
        self.store = store
        self.engine = engine
        self.hub = hub
        self.catalog = catalog
        self.settings = settings
        self.outputs_dir = settings.data_dir / "outputs"
        self._cond = threading.Condition()
        self._queue: collections.deque[str] = collections.deque()
        self._running: str | None = None
        self._progress: dict[str, Any] | None = None
        self._preview: tuple[str, int, bytes] | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._last_retention = 0.0

    # -- lifecycle --------------------------------------------------------------------------------------------------

    def start(self) -> None:
        for job in self.store.recover():
            log.warning("job %s was running when the server stopped: now %s", job.id, job.status)
        with self._cond:
            self._queue.extend(job.id for job in self.store.queued())
        self._thread = threading.Thread(target=self._loop, name="sdrest-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop dispatching; a running job is interrupted and will be queued again at the next start."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.engine.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- requests from the API --------------------------------------------------------------------------------------

    def submit(self, job: JobRecord) -> int:
        """Queue a job; returns its position (1 = next). Raises QueueFull."""
        with self._cond:
            if len(self._queue) >= self.settings.queue_size:
                raise QueueFull(f"the queue holds {len(self._queue)} jobs, its limit; try again later")
            self.store.add(job)
            self._queue.append(job.id)
            position = len(self._queue)
            self._cond.notify_all()
        self.hub.publish(job.id, "queued", {"position": position})
        return position

    def position(self, job_id: str) -> int | None:
        """0 for the running job, 1.. for queued ones, None for anything else."""
        with self._cond:
            if job_id == self._running:
                return 0
            try:
                return self._queue.index(job_id) + 1
            except ValueError:
                return None

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return {"running": self._running, "queued": list(self._queue), "progress": self._progress}

    def progress(self, job_id: str) -> dict[str, Any] | None:
        with self._cond:
            return dict(self._progress) if self._running == job_id and self._progress else None

    def preview(self, job_id: str) -> tuple[int, bytes] | None:
        with self._cond:
            if self._preview is not None and self._preview[0] == job_id:
                return self._preview[1], self._preview[2]
        return None

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued job at once, or stop the worker running it. Raises NotFound / Conflict."""
        with self._cond:
            job = self.store.get(job_id)
            if job is None:
                raise NotFound(f"no job {job_id}")
            if job.status in FINISHED:
                raise Conflict(f"job {job_id} is already {job.status}")
            if job_id in self._queue:
                self._queue.remove(job_id)
                job.status, job.finished_at = CANCELLED, time.time()
                self.store.save(job)
                cancelled_now = True
            else:
                cancelled_now = False
        if cancelled_now:
            self.hub.publish(job_id, "cancelled", {})
            self._publish_positions()
            return job
        self.engine.cancel(job_id)
        # The dispatcher records the outcome and lets go of the job; wait for that so the caller sees the final state.
        with self._cond:
            self._cond.wait_for(lambda: self._running != job_id, timeout=5)
        return self.store.get(job_id) or job

    def delete(self, job_id: str) -> None:
        """Remove a finished job and its files. Raises NotFound / Conflict."""
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        if job.status not in FINISHED:
            raise Conflict(f"job {job_id} is {job.status}; cancel it first")
        shutil.rmtree(self.outputs_dir / job_id, ignore_errors=True)
        self.store.delete(job_id)

    # -- the dispatcher thread --------------------------------------------------------------------------------------

    def _next(self) -> str | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait(timeout=self._housekeeping())
            if self._stopping:
                return None
            job_id = self._queue.popleft()
            self._running, self._progress, self._preview = job_id, None, None
            return job_id

    def _housekeeping(self) -> float:
        """Idle work between jobs: unload an idle model, apply retention. Returns how long to wait next."""
        now = time.monotonic()
        idle = self.settings.idle_unload_seconds
        if idle and self.engine.state == "idle" and now - self.engine.last_used >= idle:
            log.info("unloading the model after %.0f s without jobs", idle)
            self.engine.stop()
        if self.settings.retention_days and now - self._last_retention >= RETENTION_EVERY:
            self._last_retention = now
            self.apply_retention()
        return max(1.0, min(idle or 60.0, 60.0))

    def _loop(self) -> None:
        while (job_id := self._next()) is not None:
            try:
                self._run(job_id)
            except Exception:  # the dispatcher must outlive any one job
                log.exception("job %s failed unexpectedly", job_id)
                job = self.store.get(job_id)
                if job is not None and job.status == RUNNING:
                    self._finish(job, FAILED, error={"code": "internal_error", "message": "internal error"})
            finally:
                with self._cond:
                    self._running = self._progress = None
                    self._cond.notify_all()
            self._publish_positions()

    def _publish_positions(self) -> None:
        with self._cond:
            queued = list(self._queue)
        for index, job_id in enumerate(queued, start=1):
            if self.hub.has_subscribers(job_id):
                self.hub.publish(job_id, "queued", {"position": index})

    def _run(self, job_id: str) -> None:
        job = self.store.get(job_id)
        if job is None or job.status != QUEUED:
            return
        if self._stopping:
            return
        job.status, job.started_at, job.attempts = RUNNING, time.time(), job.attempts + 1
        self.store.save(job)
        self.hub.publish(job_id, "started", {"started_at": job.started_at})
        tracker = _Tracker(self, job)
        try:
            outputs, timings = self.engine.run(job_id, self._task(job), tracker.on_event)
        except (Cancelled, EngineCrashed) as e:
            if self._stopping:
                # Stopped by the server's shutdown, not by a client or a crash: the job stays "running" in the
                # store, and the next start queues it again.
                return
            if isinstance(e, Cancelled):
                self._finish(job, CANCELLED)
                return
            if e.while_loading:
                self.catalog.mark_crashed(job.plan.values(), f"it crashed the engine while loading ({e.signal})")
            details = {"signal": e.signal, "while_loading": e.while_loading, "log": e.log_tail}
            self._finish(job, FAILED, error={"code": "engine_crashed", "message": str(e), "details": details})
        except GenerationFailed as e:
            self._finish(job, FAILED, error={"code": e.code, "message": str(e)})
        except EngineUnavailable as e:
            self._finish(job, FAILED, error={"code": "engine_unavailable", "message": str(e)})
        else:
            job.outputs = self._save_outputs(job, outputs)
            job.timings = {k: round(v, 3) for k, v in timings.items()}
            self._finish(job, COMPLETED)

    def _finish(self, job: JobRecord, status: str, error: dict[str, Any] | None = None) -> None:
        job.status, job.finished_at, job.error = status, time.time(), error
        self.store.save(job)
        data: dict[str, Any] = {}
        if status == COMPLETED:
            data = {"outputs": [o.filename for o in job.outputs], "timings": job.timings}
        elif error is not None:
            data = {"error": error}
        self.hub.publish(job.id, status, data)

    # -- turning a job into engine work -----------------------------------------------------------------------------

    def _task(self, job: JobRecord) -> dict[str, Any]:
        p = job.params
        prompt = LORA_TAG.sub("", p["prompt"]).strip()
        # LoRAs travel as absolute paths in sd.cpp's prompt syntax: the library resolved them, the wrapper reads them.
        prompt += "".join(f"<lora:{path}:{weight}>" for path, weight in job.loras)
        params: dict[str, Any] = {
            "prompt": prompt,
            "negative_prompt": p["negative_prompt"],
            "width": p["width"],
            "height": p["height"],
            "cfg_scale": p["cfg_scale"],
            "guidance": p["guidance"],
            "sample_steps": p["steps"],
            "seed": p["seed"],
            "batch_count": p["batch_count"],
            "clip_skip": p["clip_skip"],
            "sample_method": p["sampling_method"],
            "scheduler": p["scheduler"] or "default",
        }
        if p.get("eta") is not None:
            params["eta"] = p["eta"]
        model_hash = self._model_hash(job)
        infotexts = [self._infotext(job, p["seed"] + i, model_hash) for i in range(p["batch_count"])]
        return {
            "args": job.plan,
            "params": params,
            "preview": p.get("preview"),
            "encode": {"format": p["output_format"], "infotexts": infotexts},
        }

    def _model_hash(self, job: JobRecord) -> str | None:
        """The model's AutoV2 hash. Computed once per file version, on first use, as A1111 does: the infotext then
        never changes between runs of the same job, so the same seed keeps giving the same bytes."""
        try:
            return self.catalog.hashes(self.catalog.get(job.model or ""))[0][:10]
        except (UnknownModel, OSError):
            return None

    def _infotext(self, job: JobRecord, seed: int, model_hash: str | None) -> str:
        p = job.params
        name = Path(job.model or "").stem
        arch = ARCHITECTURES.get(job.architecture or "")
        info = images.Infotext(
            prompt=p["prompt"],
            negative_prompt=p["negative_prompt"],
            steps=p["steps"],
            sampler=p["sampling_method"],
            scheduler=p["scheduler"],
            guidance=p["guidance"] if arch is not None and arch.family in ("flux", "flux2") else None,
            cfg_scale=p["cfg_scale"],
            seed=seed,
            width=p["width"],
            height=p["height"],
            model_name=name,
            model_hash=model_hash,
            clip_skip=p["clip_skip"] if p["clip_skip"] > 0 else None,
            loras=[(lora["name"], lora["weight"]) for lora in p.get("loras", [])],
            extra={"Version": f"sdrest {__version__}"},
        )
        return images.format_infotext(info)

    def _save_outputs(self, job: JobRecord, outputs: list[tuple[bytes, int, int]]) -> list[OutputFile]:
        folder = self.outputs_dir / job.id
        folder.mkdir(parents=True, exist_ok=True)
        fmt = job.params["output_format"]
        extension = "jpg" if fmt == "jpeg" else fmt
        saved = []
        for index, (data, width, height) in enumerate(outputs):
            seed = job.params["seed"] + index
            filename = f"{index:02d}-{seed}.{extension}"
            (folder / filename).write_bytes(data)
            saved.append(OutputFile(filename, seed, width, height, images.media_type(fmt)))
        return saved

    def apply_retention(self) -> None:
        """Delete finished jobs (records and files) older than `retention_days`."""
        cutoff = time.time() - self.settings.retention_days * 86400
        for job in self.store.finished_before(cutoff):
            shutil.rmtree(self.outputs_dir / job.id, ignore_errors=True)
            self.store.delete(job.id)


class _Tracker:
    """Turns one job's engine messages into progress state and events."""

    def __init__(self, queue: JobQueue, job: JobRecord) -> None:
        self.queue = queue
        self.job = job
        self.images = job.params["batch_count"]
        self.image = 1
        self.last_step = 0
        self.loading = False

    def on_event(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        hub, job_id = self.queue.hub, self.job.id
        if kind == "loading":
            self.loading = True
            hub.publish(job_id, "loading", {})
        elif kind == "loaded":
            self.loading = False
            hub.publish(job_id, "loaded", {"seconds": round(message[1], 3)})
        elif kind == "progress" and not self.loading:
            self._progress(message[1], message[2], message[3])
        elif kind == "preview":
            step, data = message[1], message[2]
            with self.queue._cond:
                self.queue._preview = (job_id, step, data)
            url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
            hub.publish(job_id, "preview", {"step": step, "image": url})

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
        with self.queue._cond:
            self.queue._progress = progress
        self.queue.hub.publish(self.job.id, "progress", progress)
