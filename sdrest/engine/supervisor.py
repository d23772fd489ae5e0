"""The server's side of the generation worker: start it, feed it one job at a time, stop it.

Cancel, idle unload and crash recovery all come down to the same act: the worker process ends (TERM, then KILL
after a second) and the next job starts a fresh one. The worker's lifecycle is drawn in `engine.worker`.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from sdrest import host
from sdrest.engine import messages as m
from sdrest.engine import oneshot
from sdrest.engine.errors import Cancelled, EngineCrashed, EngineUnavailable, GenerationFailed
from sdrest.engine.process import describe_exit, spawn
from sdrest.engine.process import stop as stop_process
from sdrest.engine.protocol import EventFn
from sdrest.specs import EngineSpec

log = logging.getLogger("sdrest.engine")
native_log = logging.getLogger("sdrest.engine.sdcpp")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
READY_TIMEOUT = 120.0
WORKER = "sdrest.engine.worker:child_main"


def probe_build() -> dict[str, Any]:
    """What the binding was built with, asked of a throw-away child (the binding may not even import)."""
    info: dict[str, Any] = oneshot.run("sdrest.engine.native:backend_info")
    return info


class Supervisor:
    """Owns at most one worker process; implements `engine.protocol.Engine`. `entry` names the worker's entry point
    (tests start stand-in workers with it)."""

    def __init__(self, options: dict[str, Any], entry: str = WORKER) -> None:
        self.options = options
        self.entry = entry
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self.info: dict[str, Any] | None = None
        self.state = "stopped"
        self.loaded: dict[str, str] | None = None
        self.last_error: str | None = None
        self._job: str | None = None
        self._cancelled: str | None = None
        self._closed = False
        self.last_used = time.monotonic()
        self.starts = 0

    def probe(self) -> dict[str, Any]:
        return probe_build()

    # -- process management ---------------------------------------------------------------------------------------

    def _start(self, job_id: str) -> tuple[subprocess.Popen[bytes], Connection]:
        """The running worker, started if there is none. Raises EngineUnavailable, or Cancelled when the job is
        cancelled or the server stops while the worker starts."""
        with self._lock:
            if self._closed:
                raise Cancelled()
            if self._process is not None and self._process.poll() is None and self._conn is not None:
                return self._process, self._conn
            self.state = "starting"
            process, conn = spawn(self.entry)
            self._process, self._conn = process, conn
            self.starts += 1
        try:
            if not conn.poll(READY_TIMEOUT):
                stop_process(process)
                self._forget(process)
                self.last_error = "the worker did not start in time"
                raise EngineUnavailable(self.last_error)
            ready = m.receive_from_child(conn)
            assert isinstance(ready, m.Ready)
        except (EOFError, OSError):
            process.wait()
            if self._deliberate(job_id, process):
                raise Cancelled() from None
            self._forget(process)
            self.last_error = f"the worker process exits at start ({describe_exit(process.returncode)})"
            raise EngineUnavailable(self.last_error) from None
        with self._lock:
            if self._process is not process:  # stopped while it started
                raise Cancelled()
            self.info, self.state, self.last_error, self.loaded = ready.info, "idle", None, None
        log.info("generation worker %d ready (%s backend)", process.pid, ready.info.get("backend"))
        return process, conn

    def _deliberate(self, job_id: str, process: subprocess.Popen[bytes]) -> bool:
        """Whether a worker's end was asked for: this job was cancelled, or stop() already let go of the process."""
        with self._lock:
            return self._cancelled == job_id or self._process is not process

    def _forget(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            if self._process is process:
                self._process, self._conn, self.state, self.loaded = None, None, "stopped", None

    def stop(self) -> None:
        with self._lock:
            process, self._process, conn, self._conn = self._process, None, self._conn, None
            self.state, self.loaded = "stopped", None
        if conn is not None:
            conn.close()
        if process is not None:
            stop_process(process)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.stop()

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            self._cancelled = job_id
            running = self._job == job_id
            process = self._process if running else None
        if process is not None:
            stop_process(process)
        return running

    # -- jobs -------------------------------------------------------------------------------------------------------

    def run(self, job_id: str, spec: EngineSpec, on_event: EventFn) -> m.Done:
        with self._lock:
            self._job = job_id
            if self._cancelled == job_id:
                self._job = None
                raise Cancelled()
        try:
            return self._run(job_id, spec, on_event)
        finally:
            with self._lock:
                self._job = None
                self.last_used = time.monotonic()

    def _run(self, job_id: str, spec: EngineSpec, on_event: EventFn) -> m.Done:
        process, conn = self._start(job_id)
        if self._deliberate(job_id, process):  # cancelled before there was a process to stop
            raise Cancelled()
        tail: list[str] = []
        loading = False
        try:
            m.send(conn, m.Generate(job_id, spec, self.options))
            self.state = "generating"
            while True:
                message = m.receive_from_child(conn)
                match message:
                    case m.Log(level=level, line=line):
                        tail.append(line)
                        del tail[:-40]
                        native_log.log(_LEVELS.get(level, logging.INFO), "%s", line)
                    case m.Loading():
                        loading, self.state, self.loaded = True, "loading", None
                        on_event(message)
                    case m.Loaded():
                        loading, self.state, self.loaded = False, "generating", spec.model.plan
                        on_event(message)
                    case m.Progress() | m.PreviewImage():
                        on_event(message)
                    case m.Done():
                        self.state = "idle"
                        return message
                    case m.Failed(code=code, message=text):
                        self.state = "idle"
                        raise GenerationFailed(code, text)
        except (EOFError, OSError):
            process.wait()
            deliberate = self._deliberate(job_id, process)
            self._forget(process)
            if deliberate:
                raise Cancelled() from None
            log.error("generation worker died (%s) during job %s", describe_exit(process.returncode), job_id)
            raise EngineCrashed(process.returncode, tail[-20:], loading) from None

    def status(self) -> dict[str, Any]:
        process = self._process
        pid = process.pid if process is not None and process.poll() is None else None
        return {
            "state": self.state,
            "pid": pid,
            "loaded": self.loaded,
            "last_error": self.last_error,
            "memory_bytes": host.process_memory(pid),
            "starts": self.starts,
        }
