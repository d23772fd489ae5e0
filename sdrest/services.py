"""The long-lived objects of a running server, built in the app's lifespan and reached through `request.app.state`."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from sdrest.engine.errors import EngineError
from sdrest.engine.protocol import Engine
from sdrest.engine.supervisor import Supervisor
from sdrest.jobs.admission import admit
from sdrest.jobs.events import EventHub
from sdrest.jobs.queue import JobQueue
from sdrest.jobs.store import JobRecord, JobStore
from sdrest.library.catalog import Catalog
from sdrest.schemas import GenerateRequest
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

    def submit(self, request: GenerateRequest) -> tuple[JobRecord, int]:
        """Admit and queue a generation request; returns the job and its position. Blocking: call it on a thread."""
        job = admit(request, self.catalog, self.settings, self.queue.loaded_plan())
        return job, self.queue.submit(job)


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
