"""Jobs persisted in SQLite: every parameter, the status, timestamps, outputs and errors survive a restart.

The job lifecycle (owned by `jobs.queue`, recorded here):

    queued ──▶ running ──▶ completed
      │           │  ╲───▶ failed
      │           ╰──────▶ cancelled
      ╰──────────────────▶ cancelled

A job that was running when the server stopped is queued again once (`attempts` counts the tries); a second
interruption fails it, so a job that kills the server cannot loop forever.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = "queued", "running", "completed", "failed", "cancelled"
FINISHED = (COMPLETED, FAILED, CANCELLED)
MAX_ATTEMPTS = 2


class OutputFile(msgspec.Struct):
    filename: str
    seed: int
    width: int
    height: int
    media_type: str


class JobRecord(msgspec.Struct, omit_defaults=True):
    """Everything about a job. `params` are the request with every default filled in (the real seed included);
    `plan` is how the model loads (binding arguments), `loras` the LoRA files as (path, weight)."""

    id: str
    kind: str
    status: str
    created_at: float
    model: str | None = None
    architecture: str | None = None
    params: dict[str, Any] = {}
    plan: dict[str, str] = {}
    loras: list[tuple[str, float]] = []
    started_at: float | None = None
    finished_at: float | None = None
    outputs: list[OutputFile] = []
    error: dict[str, Any] | None = None
    attempts: int = 0
    timings: dict[str, float] = {}


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
"""
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(JobRecord).decode


class JobStore:
    """The job table. One connection shared under a lock: writes are small and rare (a few per job)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add(self, job: JobRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (id, status, created_at, finished_at, data) VALUES (?, ?, ?, ?, ?)",
                (job.id, job.status, job.created_at, job.finished_at, _encode(job)),
            )

    def save(self, job: JobRecord) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, data = ? WHERE id = ?",
                (job.status, job.finished_at, _encode(job), job.id),
            )

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _decode(row[0]) if row else None

    def page(self, status: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[JobRecord], int]:
        """Newest first; with the total count for paging."""
        where, args = ("WHERE status = ?", (status,)) if status else ("", ())
        with self._lock:
            total = self._db.execute(f"SELECT count(*) FROM jobs {where}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT data FROM jobs {where} ORDER BY seq DESC LIMIT ? OFFSET ?", (*args, limit, offset)
            ).fetchall()
        return [_decode(r[0]) for r in rows], total

    def queued(self) -> list[JobRecord]:
        """Queued jobs in the order they were submitted."""
        with self._lock:
            rows = self._db.execute("SELECT data FROM jobs WHERE status = ? ORDER BY seq", (QUEUED,)).fetchall()
        return [_decode(r[0]) for r in rows]

    def delete(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def recover(self) -> list[JobRecord]:
        """After a restart: jobs left running go back to the queue once, or fail when that was their last try."""
        with self._lock:
            rows = self._db.execute("SELECT data FROM jobs WHERE status = ?", (RUNNING,)).fetchall()
        changed = []
        for row in rows:
            job = _decode(row[0])
            if job.attempts >= MAX_ATTEMPTS:
                job.status, job.finished_at = FAILED, time.time()
                job.error = {
                    "code": "interrupted",
                    "message": f"the server stopped during this job {job.attempts} times",
                }
            else:
                job.status, job.started_at = QUEUED, None
            self.save(job)
            changed.append(job)
        return changed

    def finished_before(self, cutoff: float) -> list[JobRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?", (cutoff,)
            ).fetchall()
        return [_decode(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
