"""Jobs persisted in SQLite: the spec, the status, timestamps, outputs and errors survive a restart.

The job lifecycle (owned by `jobs.dispatcher`, recorded here):

    queued ──▶ running ──▶ completed
      │           │  ╲───▶ failed
      │           ╰──────▶ cancelled
      ╰──────────────────▶ cancelled

A job that was running when the server stopped is queued again once (`attempts` counts the tries); a second
interruption fails it, so a job that kills the server cannot loop forever. The schema has a version
(`PRAGMA user_version`); `_MIGRATIONS` brings an older database up to date at open, one step at a time.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from sdrest.jobs.webhooks import Webhook
from sdrest.specs import JobSpec, LoraUse, ModelUse, Preview, Txt2Img
from sdrest.sqlite import Connection

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
    """Everything about a job: its spec (the request resolved, every default filled in) and what became of it."""

    id: str
    status: str
    created_at: float
    spec: JobSpec
    started_at: float | None = None
    finished_at: float | None = None
    outputs: list[OutputFile] = []
    error: dict[str, Any] | None = None
    attempts: int = 0
    timings: dict[str, float] = {}
    warnings: list[str] = []
    result: dict[str, Any] = {}  # what a task made: a converted file's name, hashes, a downloaded file
    owner: str | None = None  # who submitted it (None: no auth, or a job from before owners existed)
    webhook: Webhook | None = None  # where to tell about its progress

    @property
    def kind(self) -> str:
        return type(self.spec).__struct_config__.tag  # type: ignore[return-value]


# Told when a job starts ("started") and how it ends ("completed", "failed", "cancelled"): metrics, webhooks.
Observer = Callable[[JobRecord, str], None]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(JobRecord).decode


def _v1_tables(db: sqlite3.Connection) -> None:
    # One statement per execute: executescript() would commit the migration's transaction half-way.
    db.execute(
        """
        CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT UNIQUE NOT NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            finished_at REAL,
            data BLOB NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX jobs_status ON jobs (status, seq)")


def _v2_typed_specs(db: sqlite3.Connection) -> None:
    """Version 0.1 stored `params`/`plan`/`loras` dicts; they become a typed spec."""
    db.execute("ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'txt2img'")
    for job_id, data in db.execute("SELECT id, data FROM jobs").fetchall():
        old = msgspec.json.decode(data)
        if "spec" in old:
            continue
        p, plan = old.pop("params", {}), old.pop("plan", {})
        loras = [LoraUse(path.rsplit("/", 1)[-1], path, weight) for path, weight in old.pop("loras", [])]
        model = ModelUse(
            old.pop("model", None) or "", old.pop("architecture", None) or "", plan, next(iter(plan.values()), "")
        )
        preview = p.get("preview")
        spec = Txt2Img(
            model=model,
            prompt=p.get("prompt", ""),
            clean_prompt=_strip_tags(p.get("prompt", "")),
            negative_prompt=p.get("negative_prompt", ""),
            width=p.get("width", 512),
            height=p.get("height", 512),
            steps=p.get("steps", 20),
            cfg_scale=p.get("cfg_scale", 7.0),
            guidance=p.get("guidance", 3.5),
            sampling_method=p.get("sampling_method", "euler_a"),
            scheduler=p.get("scheduler"),
            eta=p.get("eta"),
            seed=p.get("seed", 0),
            batch_count=p.get("batch_count", 1),
            clip_skip=p.get("clip_skip", -1),
            output_format=p.get("output_format", "png"),
            loras=loras,
            named_loras=[(x["name"], x["weight"]) for x in p.get("loras", [])],
            vae=p.get("vae"),
            taesd=p.get("taesd"),
            preview=Preview(**preview) if preview else None,
        )
        old.pop("kind", None)
        record = msgspec.convert({**old, "spec": msgspec.to_builtins(spec)}, JobRecord)
        db.execute("UPDATE jobs SET data = ? WHERE id = ?", (_encode(record), job_id))


def _v3_expired(db: sqlite3.Connection) -> None:
    """Jobs that retention removed, so their URLs answer 410 Gone instead of 404."""
    db.execute("CREATE TABLE expired (id TEXT PRIMARY KEY, expired_at REAL NOT NULL)")


def _strip_tags(prompt: str) -> str:
    from sdrest.specs import LORA_TAG

    return LORA_TAG.sub("", prompt).strip()


def _v4_owners(db: sqlite3.Connection) -> None:
    """Jobs record who submitted them; users see only their own."""
    db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
    db.execute("CREATE INDEX jobs_owner ON jobs (owner, seq)")


_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1_tables, _v2_typed_specs, _v3_expired, _v4_owners]
SCHEMA_VERSION = len(_MIGRATIONS)


class JobStore:
    """The job table. One connection shared under a lock: writes are small and few (a few per job). Every method
    does SQLite I/O: call them from threads, never from the event loop."""

    def __init__(self, path: Path) -> None:
        self._conn = Connection(path)
        self._tx = self._conn.tx
        self._migrate()

    def _migrate(self) -> None:
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and db.execute("SELECT 1 FROM sqlite_master WHERE name = 'jobs'").fetchone():
                version = 1  # a 0.1 database: its tables exist, it has no version yet
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"the job database is from a newer sdrest (schema {version} > {SCHEMA_VERSION})")
            for migration in _MIGRATIONS[version:]:
                migration(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def version(self) -> int:
        with self._conn.read() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    def add(self, job: JobRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, status, created_at, finished_at, owner, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job.id, job.kind, job.status, job.created_at, job.finished_at, job.owner, _encode(job)),
            )

    def save(self, job: JobRecord) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, data = ? WHERE id = ?",
                (job.status, job.finished_at, _encode(job), job.id),
            )

    def get(self, job_id: str) -> JobRecord | None:
        with self._conn.read() as db:
            row = db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _decode(row[0]) if row else None

    def expired_at(self, job_id: str) -> float | None:
        """When retention removed this job, if it did."""
        with self._conn.read() as db:
            row = db.execute("SELECT expired_at FROM expired WHERE id = ?", (job_id,)).fetchone()
        return float(row[0]) if row else None

    def page(
        self,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
        owner: str | None = None,
        *,
        kinds: tuple[str, ...] = (),
        model: str | None = None,
        text: str | None = None,
    ) -> tuple[list[JobRecord], int]:
        """Newest first; with the total count for paging. Only `owner`'s jobs when one is given; only these `kinds`;
        only jobs of library model `model`; only prompts containing `text` (ASCII case ignored)."""
        clauses: list[str] = []
        params: list[Any] = []
        if status:
            clauses.append("status = ?")
            params.append(status)
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        if kinds:
            clauses.append(f"kind IN ({', '.join('?' * len(kinds))})")
            params.extend(kinds)
        if model is not None:
            clauses.append("json_extract(CAST(data AS TEXT), '$.spec.model.name') = ?")
            params.append(model)
        if text:
            clauses.append("instr(lower(json_extract(CAST(data AS TEXT), '$.spec.prompt')), lower(?)) > 0")
            params.append(text)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        args = tuple(params)
        with self._conn.read() as db:
            total = db.execute(f"SELECT count(*) FROM jobs {where}", args).fetchone()[0]
            rows = db.execute(
                f"SELECT data FROM jobs {where} ORDER BY seq DESC LIMIT ? OFFSET ?", (*args, limit, offset)
            ).fetchall()
        return [_decode(r[0]) for r in rows], total

    def queued(self) -> list[JobRecord]:
        """Queued jobs in the order they were submitted."""
        with self._conn.read() as db:
            rows = db.execute("SELECT data FROM jobs WHERE status = ? ORDER BY seq", (QUEUED,)).fetchall()
        return [_decode(r[0]) for r in rows]

    def delete(self, job_id: str, expired: bool = False) -> None:
        """Forget a job; `expired` remembers that retention removed it (its URLs then answer 410)."""
        with self._tx() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            if expired:
                db.execute("INSERT OR REPLACE INTO expired (id, expired_at) VALUES (?, ?)", (job_id, time.time()))

    def recover(self) -> list[JobRecord]:
        """After a restart: jobs left running go back to the queue once, or fail when that was their last try."""
        with self._conn.read() as db:
            rows = db.execute("SELECT data FROM jobs WHERE status = ?", (RUNNING,)).fetchall()
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
        with self._conn.read() as db:
            rows = db.execute(
                "SELECT data FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?", (cutoff,)
            ).fetchall()
        return [_decode(r[0]) for r in rows]

    def close(self) -> None:
        self._conn.close()
