"""The ways engine work ends without a result. The engine raises these; the jobs layer records them.

EngineError
├── EngineCrashed        the child process died (a native abort or segfault); carries the signal and log tail
├── Cancelled            the job was cancelled (or the server stopped) while it ran
├── GenerationFailed     sd.cpp refused the job without crashing; carries a stable code
├── TaskFailed           a one-off binding call reported a failure (a conversion sd.cpp could not do)
└── EngineUnavailable    the worker cannot start (the binding does not import, or never answers)
"""

from __future__ import annotations

from sdrest.engine.process import describe_exit


class EngineError(Exception):
    """Base of the ways engine work can end without a result."""


class EngineCrashed(EngineError):
    """A child process died instead of answering; `while_loading` says whether it died loading the model."""

    def __init__(self, exitcode: int | None, log_tail: list[str], while_loading: bool = False) -> None:
        self.exitcode = exitcode
        self.signal = describe_exit(exitcode)
        self.log_tail = log_tail
        self.while_loading = while_loading
        stage = " while loading the model" if while_loading else ""
        super().__init__(f"the native library crashed{stage} ({self.signal})")


class Cancelled(EngineError):
    """The job was cancelled while it ran."""


class GenerationFailed(EngineError):
    """sd.cpp refused the job without crashing (a model that does not load, an argument it rejects)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class TaskFailed(EngineError):
    """A one-off binding call reported a failure; the message is sd.cpp's."""


class EngineUnavailable(EngineError):
    """The worker process cannot start (the binding does not import, or never answers)."""
