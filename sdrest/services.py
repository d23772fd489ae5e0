"""The long-lived objects of a running server, built in the app's lifespan and reached through `request.app.state`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sdrest.engine.supervisor import Supervisor
from sdrest.jobs.events import EventHub
from sdrest.jobs.queue import JobQueue
from sdrest.jobs.store import JobStore
from sdrest.library.catalog import Catalog
from sdrest.settings import Settings


@dataclass
class Services:
    settings: Settings
    catalog: Catalog
    store: JobStore
    hub: EventHub
    engine: Supervisor
    queue: JobQueue
    build_info: dict[str, Any] = field(default_factory=dict)
    build_error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)


def build(settings: Settings, engine: Supervisor | None = None) -> Services:
    """Everything a server needs, created but not started. `engine` replaces the worker supervisor (tests pass a
    fake one to check queue semantics quickly)."""
    catalog = Catalog(settings.models_path, settings.data_dir / "library.sqlite3")
    store = JobStore(settings.data_dir / "jobs.sqlite3")
    hub = EventHub()
    options: dict[str, Any] = {"lora_apply_mode": settings.lora_apply_mode}
    if settings.threads:
        options["n_threads"] = settings.threads
    engine = engine or Supervisor(options)
    queue = JobQueue(store, engine, hub, catalog, settings)
    return Services(settings, catalog, store, hub, engine, queue)
