"""The long-lived objects of a running server, built in the app's lifespan and reached through `request.app.state`."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from sdrest.engine.errors import EngineError
from sdrest.engine.protocol import Engine
from sdrest.engine.supervisor import Supervisor
from sdrest.jobs.admission import admit, admit_upscale, admit_video
from sdrest.jobs.errors import JobsError
from sdrest.jobs.events import EventHub
from sdrest.jobs.queue import JobQueue
from sdrest.jobs.store import JobRecord, JobStore
from sdrest.library.catalog import Catalog
from sdrest.schemas import GenerateRequest, UpscaleRequest, VideoRequest
from sdrest.settings import Settings
from sdrest.views import ModelViews

log = logging.getLogger("sdrest")


@dataclass
class Services:
    settings: Settings
    catalog: Catalog
    store: JobStore
    hub: EventHub
    engine: Engine
    queue: JobQueue
    views: ModelViews
    build_info: dict[str, Any] = field(default_factory=dict)
    build_error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def probe_engine(self) -> None:
        """Learn what the engine was built with, without delaying start-up (run it on a thread)."""
        try:
            self.build_info = self.engine.probe()
        except EngineError as e:  # generation cannot work: report it, keep serving the rest
            self.build_error = f"the stable-diffusion.cpp binding does not load: {e}"
            log.error("%s", self.build_error)
        finally:
            self.ready.set()

    def read_output(self, job_id: str, filename: str) -> bytes:
        """An earlier output of this server, for requests that use one as an input image."""
        try:
            _, _, path = self.queue.output(job_id, filename)
            return path.read_bytes()
        except (JobsError, OSError) as e:
            raise LookupError(str(e)) from e

    def submit(
        self, request: GenerateRequest | UpscaleRequest | VideoRequest, owner: str | None = None
    ) -> tuple[JobRecord, int]:
        """Admit and queue a request; returns the job and its position. Blocking: call it on a thread."""
        files, loaded = self.queue.files, self.queue.loaded_plan()
        job: JobRecord
        match request:
            case GenerateRequest():
                job = admit(request, self.catalog, self.settings, files, self.read_output, loaded)
            case UpscaleRequest():
                job = admit_upscale(request, self.catalog, self.settings, files, self.read_output)
            case VideoRequest():
                job = admit_video(request, self.catalog, self.settings, files, self.read_output, loaded)
        job.owner = owner
        try:
            return job, self.queue.submit(job)
        except JobsError:
            files.remove(job.id)  # refused (queue full): its stored inputs go with it
            raise


def build(settings: Settings, engine: Engine | None = None) -> Services:
    """Everything a server needs, created but not started. `engine` replaces the worker supervisor (tests pass a
    fake one to check queue semantics quickly; it starts nothing real)."""
    catalog = Catalog(settings.models_path, settings.data_dir / "library.sqlite3")
    store = JobStore(settings.data_dir / "jobs.sqlite3")
    hub = EventHub()
    if engine is None:
        options: dict[str, Any] = {"lora_apply_mode": settings.lora_apply_mode}
        if settings.threads:
            options["n_threads"] = settings.threads
        engine = Supervisor(options)
    queue = JobQueue(store, engine, hub, catalog, settings)
    return Services(settings, catalog, store, hub, engine, queue, ModelViews(catalog))
