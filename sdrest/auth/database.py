"""The SQLite file behind the auth stores: one connection per store under a lock, and per-store schema versions.

Several stores may share one file (`auth.sqlite3`): each keeps its own tables and records its schema version in the
`schema` table under its own name, so each migrates on its own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from sdrest.sqlite import Connection

Migration = Callable[[sqlite3.Connection], None]


class Database(Connection):
    """The shared connection (`sdrest.sqlite.Connection`) with this store's migrations applied. Blocking."""

    def __init__(self, path: Path, store: str, migrations: Sequence[Migration]) -> None:
        # Password hashes and token digests live here: nobody but the service user needs to read the file.
        super().__init__(path, mode=0o600)
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
