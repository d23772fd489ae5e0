"""What the jobs layer refuses, with the logical field a client must fix. Each API family renders these in its own
shape (the native one in `sdrest.errors`); nothing here knows HTTP.

    JobsError
    ├── Invalid      the request cannot run as asked (`field` is its JSON path: `$.width`, `$.loras[0].name`)
    ├── NoSuchJob    no job with that id (or none the caller may see)
    ├── Expired      the job or its files existed, and retention removed them
    ├── WrongState   the job is not in a state that allows this (cancel a finished job, delete a running one)
    └── QueueFull    the queue holds its limit
"""

from __future__ import annotations

from typing import Any


class JobsError(Exception):
    """Base of the jobs layer's refusals."""

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details


class Invalid(JobsError):
    """The request cannot run as asked; `field` names what to fix."""


class NoSuchJob(JobsError):
    """No job with that id."""


class Expired(JobsError):
    """Retention removed the job's files (or the job)."""


class WrongState(JobsError):
    """The job's state does not allow the operation."""


class QueueFull(JobsError):
    """The queue is at its limit."""
