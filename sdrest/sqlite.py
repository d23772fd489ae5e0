"""One SQLite connection shared by a store's threads: WAL, one lock, `tx()` for a write transaction, `read()` for
reads. Every call blocks: stores use it from threads, never from the event loop."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Connection:
    def __init__(self, path: Path, mode: int | None = None) -> None:
        """Open (creating) `path`; `mode` sets the permissions a new file gets (e.g. 0o600 for secrets)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode is not None:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, mode))
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.Lock()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, rolled back if the block raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def close(self) -> None:
        with self._lock:
            self._db.close()
