"""Housekeeping, on a thread of its own: unload a model left idle, and apply retention to old jobs.

It takes no lock the API waits on: the idle unload only happens when it can take the dispatcher's engine lock without
waiting (no job is using the engine), and retention is file and SQLite work between jobs' own writes.
"""

from __future__ import annotations

import logging
import threading
import time

from sdrest.engine.protocol import Engine
from sdrest.jobs.files import JobFiles
from sdrest.jobs.store import JobStore
from sdrest.settings import Settings

log = logging.getLogger("sdrest.jobs")
RETENTION_EVERY = 3600.0


class Housekeeper:
    def __init__(
        self, settings: Settings, engine: Engine, engine_lock: threading.Lock, store: JobStore, files: JobFiles
    ) -> None:
        self.settings, self.engine, self.engine_lock, self.store, self.files = (
            settings,
            engine,
            engine_lock,
            store,
            files,
        )
        self._stop = threading.Event()
        self._last_retention = 0.0
        self._thread = threading.Thread(target=self._loop, name="sdrest-housekeeping", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def interval(self) -> float:
        idle = self.settings.idle_unload_seconds
        return max(0.2, min(idle / 4 if idle else 60.0, 60.0))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.unload_if_idle()
                if self.settings.retention_days and time.monotonic() - self._last_retention >= RETENTION_EVERY:
                    self._last_retention = time.monotonic()
                    self.apply_retention()
            except Exception:  # housekeeping must outlive any one failure
                log.exception("housekeeping failed")

    def unload_if_idle(self) -> None:
        idle = self.settings.idle_unload_seconds
        if not idle or not self.engine_lock.acquire(blocking=False):
            return
        try:
            if self.engine.state == "idle" and time.monotonic() - self.engine.last_used >= idle:
                log.info("unloading the model after %.0f s without jobs", idle)
                self.engine.stop()
        finally:
            self.engine_lock.release()

    def apply_retention(self) -> None:
        """Delete finished jobs (records and files) older than `retention_days`; their URLs then answer 410."""
        cutoff = time.time() - self.settings.retention_days * 86400
        for job in self.store.finished_before(cutoff):
            self.files.remove(job.id)
            self.store.delete(job.id, expired=True)
