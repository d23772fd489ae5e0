"""The SQLite file behind the auth stores: one connection per store under a lock, and per-store schema versions.

Several stores may share one file (`auth.sqlite3`): each keeps its own tables and records its schema version in the
`schema` table under its own name, so each migrates on its own.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

Migration = Callable[[sqlite3.Connection], None]


class Database:
    """A connection shared under a lock; `tx()` for writes (one transaction), `read()` for reads. Blocking."""

    def __init__(self, path: Path, store: str, migrations: Sequence[Migration]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Password hashes and token digests live here: nobody but the service user needs to read the file.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.Lock()
        self._migrate(store, migrations)

    def _migrate(self, store: str, migrations: Sequence[Migration]) -> None:
        with self.tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema (store TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema WHERE store = ?", (store,)).fetchone()
            version = row[0] if row else 0
            if version > len(migrations):
                raise RuntimeError(f"the {store} tables are from a newer sdrest (schema {version} > {len(migrations)})")
            for migration in migrations[version:]:
                migration(db)
            db.execute("INSERT OR REPLACE INTO schema (store, version) VALUES (?, ?)", (store, len(migrations)))

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
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
