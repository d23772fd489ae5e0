"""The long-lived objects of a running server, built in the app's lifespan and reached through `request.app.state`."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from sdrest import host
from sdrest.auth.methods import parse_methods
from sdrest.auth.tokens import load_or_create_secret
from sdrest.engine.errors import EngineError
from sdrest.engine.protocol import Engine
from sdrest.engine.supervisor import Supervisor
from sdrest.jobs import estimate, fit, webhooks
from sdrest.jobs.admission import admit, admit_load, admit_upscale, admit_video
from sdrest.jobs.errors import Invalid, JobsError
from sdrest.jobs.events import EventHub
from sdrest.jobs.queue import JobQueue
from sdrest.jobs.store import QUEUED, JobRecord, JobStore
from sdrest.library.catalog import Catalog, ModelFile
from sdrest.metrics import Metrics
from sdrest.schemas import GenerateRequest, UpscaleRequest, VideoRequest
from sdrest.settings import Settings
from sdrest.specs import EngineSpec
from sdrest.views import ModelViews

log = logging.getLogger("sdrest")
# Settings a reload applies in place (the rest are read once: addresses, directories, auth).
RELOADABLE = ("log_level", "idle_unload_seconds", "queue_size", "retention_days", "max_side", "max_pixels",
              "max_batch", "max_prompt_chars", "max_input_bytes", "allow_input_urls", "allow_download_urls",
              "hf_token", "fit_memory")  # fmt: skip


@dataclass
class Services:
    settings: Settings
    catalog: Catalog
    store: JobStore
    hub: EventHub
    engine: Engine
    queue: JobQueue
    views: ModelViews
    metrics: Metrics
    webhooks: webhooks.Sender
    build_info: dict[str, Any] = field(default_factory=dict)
    build_error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def probe_engine(self) -> None:
        """Learn what the engine was built with, without delaying start-up (run it on a thread)."""
        try:
            info = self.engine.probe()
            gpus = [d for d in info.get("devices", []) if d.get("name", "CPU").upper() != "CPU"]
            if not gpus and info.get("backend", "CPU") != "CPU":
                # A binding that cannot list ggml's devices: the vendor's tool tells the memory instead.
                info["devices"] = [*info.get("devices", []), *host.vendor_gpus()]
            self.build_info = info
        except EngineError as e:  # generation cannot work: report it, keep serving the rest
            self.build_error = f"the stable-diffusion.cpp binding does not load: {e}"
            log.error("%s", self.build_error)
        finally:
            self.ready.set()

    def status_line(self) -> str:
        """What systemd's STATUS= shows: the queue and the loaded model."""
        snapshot = self.queue.snapshot()
        loaded = self.queue.loaded_plan() or {}
        main = loaded.get("model_path") or loaded.get("diffusion_model_path")
        model = Path(main).name if main else "no model loaded"
        running = "1 running" if snapshot["running"] else "idle"
        return f"{running}, {len(snapshot['queued'])} queued; {model}"

    def reload(self, fresh: Settings) -> None:
        """Apply the settings that can change while serving; say which others need a restart. Rescans the library."""
        changed = [name for name in RELOADABLE if getattr(fresh, name) != getattr(self.settings, name)]
        for name in changed:
            setattr(self.settings, name, getattr(fresh, name))
        restart = [n for n in msgspec.structs.fields(Settings) if n.name not in RELOADABLE
                   and getattr(fresh, n.name) != getattr(self.settings, n.name)]  # fmt: skip
        if "log_level" in changed:
            logging.getLogger().setLevel(self.settings.log_level.upper())
        self.queue.lane.limit = self.queue.task_lane.limit = self.settings.queue_size
        self.views.invalidate()
        entries = self.catalog.scan()
        log.info("reloaded: %s; %d files in the library", ", ".join(changed) or "no setting changed", len(entries))
        if restart:
            log.warning("changed, but only a restart applies: %s", ", ".join(f.name for f in restart))

    def tell_webhooks(self, job: JobRecord, event: str) -> None:
        """The queue's observer: send the job's own webhook and the server's ones their events."""
        targets = [url for url in self.settings.webhooks.split(",") if url.strip() and event != "started"]
        if job.webhook is not None and event in job.webhook.events:
            targets.append(job.webhook.url)
        if not targets:
            return
        payload = {
            "job": {"id": job.id, "kind": job.kind, "status": job.status, "owner": job.owner,
                    "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at,
                    "outputs": [f"/api/v1/jobs/{job.id}/output/{o.filename}" for o in job.outputs],
                    "error": job.error, "result": job.result},
        }  # fmt: skip
        for url in targets:
            self.webhooks.send(url.strip(), event, payload)

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
        hook = None
        if request.webhook is not None:
            try:
                self.webhooks.allow.check(request.webhook.url)
            except webhooks.WebhookRefused as e:
                raise Invalid(str(e), field="$.webhook.url") from e
            hook = webhooks.Webhook(request.webhook.url, tuple(request.webhook.events))
        job = self._admit(request)
        job.owner, job.webhook = owner, hook
        try:
            self.fit_memory(job, request)
            return job, self.queue.submit(job)
        except JobsError:
            self.queue.files.remove(job.id)  # refused (does not fit, queue full): its stored inputs go with it
            raise

    def load_job(self, entry: ModelFile, owner: str | None = None) -> JobRecord:
        """A job that loads `entry` as an image job of it would (same plan and options), fitted to the memory there
        is; raises JobsError (`Invalid`) when it cannot be. Blocking: call it on a thread."""
        spec = admit_load(entry, self.catalog, self.settings)
        job = JobRecord(id=uuid.uuid4().hex, status=QUEUED, created_at=time.time(), spec=spec, owner=owner)
        self.fit_memory(job, None)
        return job

    def _admit(self, request: GenerateRequest | UpscaleRequest | VideoRequest) -> JobRecord:
        files, loaded = self.queue.files, self.queue.loaded_plan()
        match request:
            case GenerateRequest():
                return admit(request, self.catalog, self.settings, files, self.read_output, loaded)
            case UpscaleRequest():
                return admit_upscale(request, self.catalog, self.settings, files, self.read_output)
            case VideoRequest():
                return admit_video(request, self.catalog, self.settings, files, self.read_output, loaded)

    def estimate(self, request: GenerateRequest | UpscaleRequest | VideoRequest) -> dict[str, Any]:
        """Whether a request would fit and about how long it would take, without queueing it. Blocking."""
        job = self._admit(request)
        message: str | None = None
        memory: dict[str, Any] | None = None
        try:
            found = self.fit_memory(job, request)
            memory = fit.describe(found) if found is not None else None
        except Invalid as e:
            message, memory = e.message, {**(e.details or {}), "fits": False}
        finally:
            self.queue.files.remove(job.id)
        spec = job.spec
        assert isinstance(spec, EngineSpec)
        past, _ = self.store.page(status="completed", limit=estimate.RECENT * 5, model=spec.model.name)
        snapshot = self.queue.snapshot()
        return {
            "model": spec.model.name,
            "architecture": spec.model.architecture,
            "fits": message is None,
            "message": message,
            "memory": memory,
            "seconds": estimate.estimate(spec, past, self.queue.loaded_plan() == spec.model.plan),
            "queue": {"ahead": len(snapshot["queued"]) + (1 if snapshot["running"] else 0)},
            "warnings": job.warnings,
        }

    def resources(self) -> fit.Resources:
        """The memory a job may use: the first GPU's free memory when the probe found one (read at start, before any
        model of ours was loaded), and RAM available plus what the worker holds (a reload frees it)."""
        self.ready.wait(30)  # the probe that finds the devices runs at start
        worker = self.engine.status().get("memory_bytes") or 0
        ram = (host.memory()["available"] or 0) + worker
        for device in self.build_info.get("devices", []):
            if device.get("name", "CPU").upper() != "CPU" and device.get("memory_total"):
                return fit.Resources(ram, device["name"], int(device["memory_free"]))
        return fit.Resources(ram)

    def fit_memory(
        self, job: JobRecord, request: GenerateRequest | UpscaleRequest | VideoRequest | None
    ) -> fit.Fit | None:
        """Choose the load options that make the job fit the machine's memory, or refuse it with the numbers."""
        spec = job.spec
        if not self.settings.fit_memory or not isinstance(spec, EngineSpec):
            return None
        asked = request.vae_tiling if isinstance(request, GenerateRequest) else None
        if isinstance(request, VideoRequest) and request.vae_tiling:
            asked = True
        found, tiling = fit.fit(spec, fit.weights(spec.model.plan), self.resources(), asked)
        if found.chosen:
            if hasattr(spec, "vae_tiling"):
                spec.vae_tiling = tiling
            spec.model.options.update({k: v for k, v in found.chosen.items() if k != "vae_tiling"})
            where = f"{found.device} memory" if found.device != "RAM" else "RAM"
            job.warnings.append(
                f"chose {', '.join(sorted(found.chosen))} to fit: about {found.need / fit.GIB:.1f} GiB needed, "
                f"{found.available / fit.GIB:.1f} GiB of {where} free"
            )
        return found


def build(settings: Settings, engine: Engine | None = None, metrics: Metrics | None = None) -> Services:
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
    metrics = metrics or Metrics(settings.data_dir / "outputs")
    queue = JobQueue(store, engine, hub, catalog, settings, metrics)
    metrics.watch_engine(engine.status)
    secret = load_or_create_secret(settings.data_dir / "webhook-secret")
    loopback = parse_methods(settings.auth) == {"none"}
    sender = webhooks.Sender(secret, webhooks.AllowList(settings.webhook_allow, loopback))
    svc = Services(settings, catalog, store, hub, engine, queue, ModelViews(catalog), metrics, sender)
    queue.observers += [metrics.job_changed, svc.tell_webhooks]
    return svc
