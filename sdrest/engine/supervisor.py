"""The server's side of the generation worker: start it, feed it one job at a time, stop it.

Cancel, idle unload and crash recovery all come down to the same act: the worker process ends (TERM, then KILL
after a second) and the next job starts a fresh one. The worker's lifecycle is drawn in `engine.worker`.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from sdrest.engine.oneshot import describe_exit
from sdrest.engine.process import spawn
from sdrest.engine.process import stop as stop_process

log = logging.getLogger("sdrest.engine")
native_log = logging.getLogger("sdrest.engine.sdcpp")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
READY_TIMEOUT = 120.0

EventFn = Callable[[tuple[Any, ...]], None]


class EngineError(Exception):
    """Base of the ways a job can end without images."""


class EngineCrashed(EngineError):
    """The worker died during the job; `while_loading` says whether it died loading the model."""

    def __init__(self, exitcode: int | None, log_tail: list[str], while_loading: bool) -> None:
        self.signal = describe_exit(exitcode)
        self.log_tail = log_tail
        self.while_loading = while_loading
        stage = "loading the model" if while_loading else "generating"
        super().__init__(f"the native library crashed while {stage} ({self.signal})")


class Cancelled(EngineError):
    """The job was cancelled while it ran."""


class GenerationFailed(EngineError):
    """sd.cpp refused the job without crashing (a model that does not load, an argument it rejects)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class EngineUnavailable(EngineError):
    """The worker process cannot start (the binding does not import, or never answers)."""


class Supervisor:
    """Owns at most one worker process. `run` is called by one thread at a time (the dispatcher); `cancel`, `stop`
    and `status` may be called from any thread."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self.info: dict[str, Any] | None = None
        self.state = "stopped"
        self.loaded: dict[str, str] | None = None
        self.last_error: str | None = None
        self._job: str | None = None
        self._cancelled: str | None = None
        self.last_used = time.monotonic()

    # -- process management ---------------------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Start a worker if none runs; returns its build info. Raises EngineUnavailable."""
        with self._lock:
            if self._process is not None and self._process.poll() is None and self._conn is not None:
                return self.info or {}
            self.state = "starting"
            process, conn = spawn("worker")
            self._process, self._conn = process, conn
        if not conn.poll(READY_TIMEOUT):
            stop_process(process)
            self.state, self.last_error = "stopped", "the worker did not start in time"
            raise EngineUnavailable(self.last_error)
        try:
            kind, info = conn.recv()
        except (EOFError, OSError):
            process.wait()
            self.state = "stopped"
            self.last_error = f"the worker process exits at start ({describe_exit(process.returncode)})"
            raise EngineUnavailable(self.last_error) from None
        self.info, self.state, self.last_error, self.loaded = info, "idle", None, None
        log.info("generation worker %d ready (%s backend)", process.pid, info.get("backend"))
        return dict(info)

    def stop(self) -> None:
        """Stop the worker (idle unload, shutdown); the next job starts a new one."""
        with self._lock:
            process, self._process, conn, self._conn = self._process, None, self._conn, None
            self.state, self.loaded = "stopped", None
        if conn is not None:
            conn.close()
        if process is not None:
            stop_process(process)

    def cancel(self, job_id: str) -> bool:
        """Cancel `job_id` if it is the one running (or about to): its worker is stopped."""
        with self._lock:
            self._cancelled = job_id
            running = self._job == job_id
            process = self._process if running else None
        if process is not None:
            stop_process(process)
        return running

    # -- jobs -------------------------------------------------------------------------------------------------------

    def run(self, job_id: str, task: dict[str, Any], on_event: EventFn) -> tuple[list[tuple[bytes, int, int]], dict]:
        """Run one generation; returns (encoded images with sizes, timings). Raises an EngineError."""
        with self._lock:
            self._job = job_id
            if self._cancelled == job_id:
                self._job = None
                raise Cancelled()
        try:
            return self._run(job_id, task, on_event)
        finally:
            with self._lock:
                self._job = None
                self.last_used = time.monotonic()

    def _run(self, job_id: str, task: dict[str, Any], on_event: EventFn) -> tuple[list[tuple[bytes, int, int]], dict]:
        self.start()
        conn, process = self._conn, self._process
        assert conn is not None and process is not None
        tail: list[str] = []
        loading = False
        try:
            conn.send(("generate", {**task, "options": {**self.options, **task.get("options", {})}}))
            self.state = "generating"
            while True:
                message = conn.recv()
                kind = message[0]
                if kind == "log":
                    tail.append(message[2])
                    del tail[:-40]
                    native_log.log(_LEVELS.get(message[1], logging.INFO), "%s", message[2])
                elif kind == "loading":
                    loading, self.state, self.loaded = True, "loading", None
                    on_event(message)
                elif kind == "loaded":
                    loading, self.state, self.loaded = False, "generating", task["args"]
                    on_event(message)
                elif kind in ("progress", "preview"):
                    on_event(message)
                elif kind == "done":
                    self.state = "idle"
                    return message[1], message[2]
                elif kind == "failed":
                    self.state = "idle"
                    raise GenerationFailed(message[1], message[2])
        except (EOFError, OSError, BrokenPipeError):
            process.wait()
            with self._lock:
                # Stopped on purpose: this job was cancelled, or stop() (shutdown) already let go of the process.
                deliberate = self._cancelled == job_id or self._process is not process
                if self._process is process:
                    self._process, self._conn, self.state, self.loaded = None, None, "stopped", None
            if deliberate:
                raise Cancelled() from None
            log.error("generation worker died (%s) during job %s", describe_exit(process.returncode), job_id)
            raise EngineCrashed(process.returncode, tail[-20:], loading) from None

    def status(self) -> dict[str, Any]:
        process = self._process
        return {
            "state": self.state,
            "pid": process.pid if process is not None and process.poll() is None else None,
            "loaded": self.loaded,
            "last_error": self.last_error,
        }
