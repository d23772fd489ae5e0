"""The side lane: model-management jobs (convert, hash, download) that need no generation worker, run one at a time
on a thread of their own beside the generation lane, with progress events and cancellation.

A runner per kind turns the job's spec into work; it reports progress through its `TaskContext`, checks
`context.cancel` (or hands it to a child process), and returns the job's `result`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdrest.engine.errors import Cancelled, EngineError
from sdrest.jobs.events import EventHub
from sdrest.jobs.lane import Lane
from sdrest.jobs.lifecycle import Lifecycle
from sdrest.jobs.live import LiveState
from sdrest.jobs.store import CANCELLED, COMPLETED, FAILED, RUNNING, JobRecord, JobStore, Observer
from sdrest.library import convert as converter
from sdrest.library.catalog import Catalog
from sdrest.library.folders import folder_for_role
from sdrest.library.hashing import hashes_of, legacy_hash, sha256_file
from sdrest.settings import Settings
from sdrest.specs import Convert, Download, Hash

log = logging.getLogger("sdrest.jobs")


class TaskFailed(Exception):
    """A task could not do its work; the message says why."""


class TaskContext:
    """What a runner gets: its job, the library, progress reporting and the cancel flag."""

    def __init__(self, job: JobRecord, catalog: Catalog, settings: Settings, hub: EventHub, live: LiveState) -> None:
        self.job, self.catalog, self.settings, self.hub, self.live = job, catalog, settings, hub, live
        self.cancel = threading.Event()
        self._started = time.monotonic()
        self._last = 0.0

    def progress(self, done: int, total: int | None, unit: str = "bytes") -> None:
        """Report progress (at most 10 events a second, and always the last one)."""
        now = time.monotonic()
        if self.cancel.is_set():
            raise Cancelled()
        if total is not None and done < total and now - self._last < 0.1:
            return
        self._last = now
        elapsed = max(now - self._started, 1e-6)
        data: dict[str, Any] = {"done": done, "total": total, "unit": unit, "rate": round(done / elapsed, 1)}
        if total:
            data["fraction"] = round(done / total, 4)
        self.live.set_progress(self.job.id, data)
        self.hub.publish(self.job.id, "progress", data)


Runner = Callable[[TaskContext], dict[str, Any]]


def run_convert(context: TaskContext) -> dict[str, Any]:
    spec = context.job.spec
    assert isinstance(spec, Convert)
    try:
        converter.convert(
            Path(spec.source_path),
            Path(spec.output_path),
            spec.type,
            force=spec.force,
            progress=lambda done, total: context.progress(done, total, "tensors"),
            cancel=context.cancel,
        )
    except converter.ConvertError as e:
        raise TaskFailed(str(e)) from e
    context.catalog.scan()
    return {"model": spec.output}


def run_hash(context: TaskContext) -> dict[str, Any]:
    spec = context.job.spec
    assert isinstance(spec, Hash)
    sizes = [Path(path).stat().st_size for _, path in spec.models]
    total, before = sum(sizes), 0
    results: dict[str, Any] = {}
    for (name, path), size in zip(spec.models, sizes, strict=True):
        entry = context.catalog.find_path(path)

        def report(done: int, _total: int, base: int = before) -> None:
            context.progress(base + done, total)

        sha256 = sha256_file(Path(path), report)
        legacy = legacy_hash(Path(path))
        if entry is not None:
            context.catalog.store_hashes(entry, sha256, legacy)
        hashes = hashes_of(sha256, legacy)
        results[name] = {"sha256": hashes.sha256, "autov2": hashes.autov2, "legacy": hashes.legacy}
        before += size
    return {"hashes": results}


def run_download(context: TaskContext) -> dict[str, Any]:
    from sdrest.library import downloads  # huggingface_hub is slow to import: only when a download runs

    spec = context.job.spec
    assert isinstance(spec, Download)
    settings = context.settings
    folder = context.catalog.models_dir / spec.folder
    dest = folder / Path(spec.filename).name
    partial_dir = settings.data_dir / "downloads"
    try:
        if spec.url is not None:
            downloads.download_url(
                spec.url, dest, progress=context.progress, cancel=context.cancel, partial_dir=partial_dir
            )
        else:
            assert spec.repo_id is not None
            downloads.download_hub(
                spec.repo_id,
                spec.filename,
                dest,
                revision=spec.revision,
                token=settings.hf_token or None,
                progress=context.progress,
                cancel=context.cancel,
                partial_dir=partial_dir,
            )
    except downloads.Cancelled as e:
        raise Cancelled() from e
    except downloads.DownloadError as e:
        raise TaskFailed(str(e)) from e
    entries = {e.path: e for e in context.catalog.scan()}
    entry = entries.get(str(dest.resolve())) or entries.get(str(dest))
    if entry is not None and spec.role is None and entry.role not in ("unknown", None):
        # Saved where its header says it belongs, when the caller did not choose the folder.
        home = context.catalog.models_dir / folder_for_role(entry.role)
        if home != folder and not (home / dest.name).exists():
            home.mkdir(parents=True, exist_ok=True)
            os.replace(dest, home / dest.name)
            entries = {e.path: e for e in context.catalog.scan()}
            entry = entries.get(str((home / dest.name).resolve()))
    return {"model": entry.name if entry else str(dest.relative_to(context.catalog.models_dir))}


RUNNERS: dict[str, Runner] = {"convert": run_convert, "hash": run_hash, "download": run_download}


class TaskDispatcher:
    """Runs the side lane's jobs, one at a time, on a thread of its own."""

    def __init__(
        self,
        lane: Lane,
        store: JobStore,
        hub: EventHub,
        live: LiveState,
        catalog: Catalog,
        settings: Settings,
        observe: Observer,
    ) -> None:
        self.life = Lifecycle(store, hub, live, observe)
        self.lane, self.store, self.hub, self.live, self.catalog, self.settings = (
            lane,
            store,
            hub,
            live,
            catalog,
            settings,
        )
        self._current: TaskContext | None = None
        self._thread = threading.Thread(target=self._loop, name="sdrest-tasks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop taking tasks; the running one is cancelled and queued again at the next start."""
        self.lane.stop()
        current = self._current
        if current is not None:
            current.cancel.set()
        self._thread.join(timeout=10)

    def cancel(self, job_id: str) -> bool:
        current = self._current
        if current is None or current.job.id != job_id:
            return False
        current.cancel.set()
        return True

    def _loop(self) -> None:
        self.lane.serve(self._run, self._failed, lambda: None)

    def _failed(self, job_id: str) -> None:
        job = self.store.get(job_id)
        if job is not None and job.status == RUNNING:
            self._finish(job, FAILED, {"code": "internal_error", "message": "internal error"})

    def _run(self, job_id: str) -> None:
        job = None if self.lane.stopping else self.life.begin(job_id)
        if job is None:
            return
        context = TaskContext(job, self.catalog, self.settings, self.hub, self.live)
        self._current = context
        try:
            job.result = RUNNERS[job.kind](context)
        except Cancelled:
            if not self.lane.stopping:
                self._finish(job, CANCELLED)
            return  # stopped by a shutdown: queued again at the next start
        except (TaskFailed, EngineError, OSError) as e:
            self._finish(job, FAILED, {"code": f"{job.kind}_failed", "message": str(e)})
            return
        finally:
            self._current = None
        self._finish(job, COMPLETED)

    def _finish(self, job: JobRecord, status: str, error: dict[str, Any] | None = None) -> None:
        self.life.end(job, status, error)
