"""The side lane: model files hashed in a thread of their own, one at a time, so that hashing a 20 GB file never holds
up generation. A job whose infotext needs its model's hash starts the hash at submission and waits for it only when
it writes its outputs, reporting the hash's progress while it waits."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from sdrest.library.catalog import Catalog, ModelFile

log = logging.getLogger("sdrest.jobs")
ProgressFn = Callable[[int, int], None]


class _Hash:
    def __init__(self, entry: ModelFile) -> None:
        self.entry = entry
        self.done = threading.Event()
        self.progress = (0, entry.size)
        self.sha256: str | None = None


class ModelHasher:
    """Hashes library files in the background and remembers them in the catalog's cache."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._cond = threading.Condition()
        self._pending: collections.deque[_Hash] = collections.deque()
        self._by_path: dict[str, _Hash] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="sdrest-hasher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def request(self, path: str) -> None:
        """Hash this library file unless its hash is known or on its way. Reads the catalog's cache: call it from a
        thread, not the event loop."""
        entry = self.catalog.find_path(path)
        if entry is None or self.catalog.cached_hashes(entry) is not None:
            return
        with self._cond:
            if path not in self._by_path:
                task = _Hash(entry)
                self._by_path[path] = task
                self._pending.append(task)
                self._cond.notify_all()

    def autov2(self, path: str, progress: ProgressFn | None = None) -> str | None:
        """The file's short hash (A1111's AutoV2), waiting for a hash in progress; None if it cannot be had."""
        entry = self.catalog.find_path(path)
        if entry is None:
            return None
        cached = self.catalog.cached_hashes(entry)
        if cached is not None:
            return cached[0][:10]
        with self._cond:
            task = self._by_path.get(path)
        if task is None:
            self.request(path)
            with self._cond:
                task = self._by_path.get(path)
            if task is None:  # finished between the two looks, or cannot be read
                cached = self.catalog.cached_hashes(entry)
                return cached[0][:10] if cached else None
        while not task.done.wait(0.5):
            if self._stopping:
                return None
            if progress is not None:
                progress(*task.progress)
        return task.sha256[:10] if task.sha256 else None

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                task = self._pending.popleft()
            try:

                def report(done: int, total: int, task: _Hash = task) -> None:
                    task.progress = (done, total)

                task.sha256, _ = self.catalog.hashes(task.entry, report)
            except OSError as e:
                log.warning("cannot hash %s: %s", task.entry.name, e)
            except Exception:  # a bug must not end the thread: jobs waiting on a hash would wait forever
                log.exception("hashing %s failed", task.entry.name)
            finally:
                task.done.set()
                with self._cond:
                    self._by_path.pop(task.entry.path, None)
