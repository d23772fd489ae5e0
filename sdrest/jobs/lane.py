"""A lane: the order of its queued jobs, their positions, and the one job it is running. No I/O happens under its
lock, so positions and submissions never wait on slow work."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterable

from sdrest.jobs.errors import QueueFull

log = logging.getLogger("sdrest.jobs")


class Lane:
    """Queued job ids in order, at most `limit` of them, and the id being run (position 0)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._cond = threading.Condition()
        self._queue: collections.deque[str] = collections.deque()
        self._reserved = 0
        self._running: str | None = None
        self._stopping = False

    def reserve(self) -> None:
        """Hold a place for a job about to be stored. Raises QueueFull."""
        with self._cond:
            waiting = len(self._queue) + self._reserved
            if waiting >= self.limit:
                raise QueueFull(f"the queue holds {waiting} jobs, its limit; try again later")
            self._reserved += 1

    def push(self, job_id: str) -> int:
        """Queue a job whose place was reserved; returns its position (1 = next)."""
        with self._cond:
            self._reserved -= 1
            self._queue.append(job_id)
            self._cond.notify_all()
            return len(self._queue)

    def release(self) -> None:
        """Give back a reserved place that was not used."""
        with self._cond:
            self._reserved -= 1

    def restore(self, job_ids: Iterable[str]) -> None:
        with self._cond:
            self._queue.extend(job_ids)
            self._cond.notify_all()

    def take(self) -> str | None:
        """The next job, now running; waits for one. None once the lane stops."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            self._running = self._queue.popleft()
            return self._running

    def done(self, job_id: str) -> None:
        with self._cond:
            if self._running == job_id:
                self._running = None
            self._cond.notify_all()

    def remove(self, job_id: str) -> bool:
        """Take a queued job out; False if it is not queued (running, finished, unknown)."""
        with self._cond:
            try:
                self._queue.remove(job_id)
            except ValueError:
                return False
            return True

    def wait_until_not_running(self, job_id: str, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._running != job_id, timeout=timeout)

    def position(self, job_id: str) -> int | None:
        """0 for the running job, 1.. for queued ones, None for anything else."""
        with self._cond:
            if job_id == self._running:
                return 0
            try:
                return self._queue.index(job_id) + 1
            except ValueError:
                return None

    @property
    def running(self) -> str | None:
        return self._running

    def queued(self) -> list[str]:
        with self._cond:
            return list(self._queue)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def serve(self, run: Callable[[str], None], failed: Callable[[str], None], after: Callable[[], None]) -> None:
        """The loop of a lane's thread: take jobs and `run` them until the lane stops. A job whose run raises is
        handed to `failed` (the lane outlives any one job); `after` runs once a job is let go."""
        while (job_id := self.take()) is not None:
            try:
                run(job_id)
            except Exception:
                log.exception("job %s failed unexpectedly", job_id)
                failed(job_id)
            finally:
                self.done(job_id)
            after()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
