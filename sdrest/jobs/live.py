"""What is happening now to running jobs: their latest progress and preview, kept in memory for the API."""

from __future__ import annotations

import threading
from typing import Any


class LiveState:
    """Progress and latest preview per running job; written by the dispatcher, read by the routes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: dict[str, dict[str, Any]] = {}
        self._preview: dict[str, tuple[int, bytes]] = {}

    def start(self, job_id: str) -> None:
        """A job starts: forget the previous ones (the last job's preview stays readable until the next starts)."""
        with self._lock:
            self._progress = {k: v for k, v in self._progress.items() if k == job_id}
            self._preview = {k: v for k, v in self._preview.items() if k == job_id}

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        with self._lock:
            self._progress[job_id] = progress

    def set_preview(self, job_id: str, step: int, jpeg: bytes) -> None:
        with self._lock:
            self._preview[job_id] = (step, jpeg)

    def progress(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            progress = self._progress.get(job_id)
            return dict(progress) if progress else None

    def preview(self, job_id: str) -> tuple[int, bytes] | None:
        with self._lock:
            return self._preview.get(job_id)

    def finish(self, job_id: str) -> None:
        """The job ended: it has no progress any more (its last preview stays)."""
        with self._lock:
            self._progress.pop(job_id, None)
