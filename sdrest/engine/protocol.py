"""The `Engine` protocol: what the jobs layer needs of whatever runs generations.

`engine.supervisor.Supervisor` (a worker process over the binding) implements it; so does the test suite's fake,
which starts nothing real. The jobs layer never learns which one it has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sdrest.engine.messages import Done, Loaded, Loading, PreviewImage, Progress

EngineEvent = Loading | Loaded | Progress | PreviewImage
EventFn = Callable[[EngineEvent], None]


class Engine(Protocol):
    """Runs one job at a time. `run` is called by one thread (the dispatcher); the rest from any thread."""

    state: str  # stopped, starting, idle, loading, generating
    loaded: dict[str, str] | None  # the loading plan of the model in memory
    last_used: float  # time.monotonic() when the last job ended

    def probe(self) -> dict[str, Any]:
        """What the engine was built with (versions, backends); blocking. Raises an EngineError."""
        ...

    def run(self, job_id: str, spec: Any, on_event: EventFn) -> Done:
        """Run one job; returns its raw images and timings. Raises an EngineError (Cancelled, EngineCrashed, ...)."""
        ...

    def cancel(self, job_id: str) -> bool:
        """Stop `job_id` if it is running or about to; True if it was."""
        ...

    def stop(self) -> None:
        """Free the model and its process (idle unload); the next job starts afresh."""
        ...

    def close(self) -> None:
        """Stop for good (server shutdown): a job running now ends as Cancelled, no new one starts."""
        ...

    def status(self) -> dict[str, Any]:
        """state, pid, loaded, last_error."""
        ...
