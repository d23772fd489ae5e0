"""The model library: every model file under the models directory, detected once and remembered in SQLite.

Rows are keyed by absolute path and invalidated by size and modification time, so a rescan of an unchanged library
reads no file at all: one directory walk, one `stat` per file, one SELECT.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from sdrest.library.detect import Detection, detect
from sdrest.library.folders import folder_role, iter_model_files, library_roots
from sdrest.library.hashing import legacy_hash, sha256_file
from sdrest.library.headers import HeaderError, read_header
from sdrest.sqlite import Connection


class ModelFile(msgspec.Struct):
    """One file of the library as `sdrest models --json` and the API show it."""

    name: str  # path relative to the library root, with forward slashes: the name clients use
    path: str
    size: int
    mtime_ns: int
    role: str
    architecture: str | None = None
    format: str | None = None
    sd_version: str | None = None
    load_as: str | None = None
    details: dict[str, Any] = {}
    warnings: list[str] = []
    error: str | None = None  # set for a file that cannot be read: it is listed as broken, never loaded

    @property
    def broken(self) -> bool:
        return self.error is not None

    @property
    def stem(self) -> str:
        return Path(self.name).stem


RESCAN_ON_MISS_AFTER = 2.0  # seconds


class UnknownModel(LookupError):
    """No model of that name in the library (or more than one: the message says which)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    entry BLOB NOT NULL,
    sha256 TEXT,
    legacy_hash TEXT
);
CREATE TABLE IF NOT EXISTS crashes (
    files TEXT PRIMARY KEY,
    reason TEXT NOT NULL
);
"""
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(ModelFile).decode


def inspect_file(path: Path, name: str, folder: str | None = None) -> tuple[ModelFile, dict[str, str]]:
    """Read and detect one file; a file that cannot be read becomes a broken entry, never an exception."""
    stat = path.stat()
    try:
        header = read_header(path)
    except HeaderError as e:
        entry = ModelFile(name, str(path), stat.st_size, stat.st_mtime_ns, "unknown", error=str(e))
        return entry, {}
    found: Detection = detect(header, filename=path.name, folder_role=folder)
    entry = ModelFile(
        name,
        str(path),
        stat.st_size,
        stat.st_mtime_ns,
        found.role,
        found.architecture,
        header.format,
        found.sd_version,
        found.load_as,
        found.details,
        found.warnings,
    )
    return entry, header.metadata


class Catalog:
    """The library under `models_dir`, with its metadata cache at `cache_path`."""

    def __init__(self, models_dir: Path, cache_path: Path) -> None:
        self.models_dir = models_dir.resolve()
        self.cache_path = cache_path
        self._lock = threading.Lock()
        self._entries: dict[str, ModelFile] | None = None
        self._by_path: dict[str, ModelFile] = {}
        # Known hashes by (path, size, mtime_ns), so a job's admission asks SQLite nothing once a file is hashed.
        self._hashes: dict[tuple[str, int, int], tuple[str, str]] = {}
        self._scanned_at = 0.0
        self.version = 0  # goes up each time a scan finds the library changed
        self._db = Connection(cache_path)
        with self._db.tx() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def scan(self, progress: Callable[[str], None] | None = None) -> list[ModelFile]:
        """Walk the library, detect new or changed files, forget vanished ones; returns all entries by name."""
        with self._lock:
            with self._db.read() as db:
                rows = db.execute("SELECT path, size, mtime_ns, entry FROM files").fetchall()
            cached = {row[0]: row[1:] for row in rows}
            entries: dict[str, ModelFile] = {}
            changed: list[tuple[str, int, int, bytes]] = []
            for path, relative in iter_model_files(self.models_dir):
                try:
                    stat = path.stat()
                except OSError:
                    continue  # vanished (or a dangling link) between the walk and now
                name = relative.as_posix()
                row = cached.get(str(path))
                if row and row[0] == stat.st_size and row[1] == stat.st_mtime_ns:
                    entry = _decode(row[2])
                    if entry.name != name:
                        entry.name = name
                else:
                    if progress is not None:
                        progress(name)
                    entry, _ = inspect_file(path, name, folder_role(relative))
                    changed.append((str(path), entry.size, entry.mtime_ns, _encode(entry)))
                entries[name] = entry
            seen = {e.path for e in entries.values()}
            roots = library_roots(self.models_dir)
            gone = [(p,) for p in cached if p not in seen and any(_under(Path(p), r) for r in roots)]
            with self._db.tx() as db:
                # A changed file loses its cached hashes along with its detection.
                db.executemany(
                    "INSERT OR REPLACE INTO files (path, size, mtime_ns, entry) VALUES (?, ?, ?, ?)", changed
                )
                db.executemany("DELETE FROM files WHERE path = ?", gone)
            # Compared entry by entry: another process (the CLI) may have rescanned a changed file into the shared
            # cache, so this scan finds its row fresh and writes nothing, yet the entry differs from ours.
            if entries != self._entries:
                self.version += 1
            self._entries = entries
            self._by_path = {e.path: e for e in entries.values()}
            self._scanned_at = time.monotonic()
            return list(entries.values())

    @property
    def entries(self) -> list[ModelFile]:
        """The entries of the last scan (scanning first if there was none)."""
        return list(self._entries.values()) if self._entries is not None else self.scan()

    def get(self, name: str, roles: Iterable[str] | None = None) -> ModelFile:
        """Find a model by its library name (`checkpoints/x.safetensors`), file name or stem; never by a path
        outside the library, so no name a client sends can reach other files. A name not found triggers one
        rescan (at most every few seconds), so a file dropped into the library is usable at once."""
        wanted = set(roles) if roles else None
        try:
            return self._find(name, wanted)
        except UnknownModel:
            if time.monotonic() - self._scanned_at < RESCAN_ON_MISS_AFTER:
                raise
        self.scan()
        return self._find(name, wanted)

    def _find(self, name: str, wanted: set[str] | None) -> ModelFile:
        candidates = [e for e in self.entries if wanted is None or e.role in wanted]
        for match in (
            lambda e: e.name == name,
            lambda e: Path(e.name).name == name,
            lambda e: e.stem == name,
            lambda e: e.name.rsplit(".", 1)[0] == name,
        ):
            hits = [e for e in candidates if match(e)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise UnknownModel(f"{name!r} is ambiguous: {', '.join(sorted(h.name for h in hits))}")
        what = " or ".join(sorted(wanted)) if wanted else "model"
        raise UnknownModel(f"no {what} named {name!r} in the library")

    def find_path(self, path: str) -> ModelFile | None:
        """The entry of the last scan at this absolute path, if any."""
        if self._entries is None:
            self.scan()
        return self._by_path.get(path)

    def cached_hashes(self, entry: ModelFile) -> tuple[str, str] | None:
        """(sha256, legacy hash) if computed for this exact version of the file."""
        key = (entry.path, entry.size, entry.mtime_ns)
        if (known := self._hashes.get(key)) is not None:
            return known
        with self._db.read() as db:
            row = db.execute(
                "SELECT sha256, legacy_hash FROM files WHERE path = ? AND size = ? AND mtime_ns = ?", key
            ).fetchone()
        if not (row and row[0]):
            return None
        self._hashes[key] = (row[0], row[1])
        return self._hashes[key]

    def hashes(self, entry: ModelFile, progress: Callable[[int, int], None] | None = None) -> tuple[str, str]:
        """(sha256, legacy hash) of a library file: from the cache, or computed (streamed, `progress(done, total)`)
        and cached."""
        cached = self.cached_hashes(entry)
        if cached is not None:
            return cached
        path = Path(entry.path)
        sha256, legacy = sha256_file(path, progress), legacy_hash(path)
        self.store_hashes(entry, sha256, legacy)
        return sha256, legacy

    def store_hashes(self, entry: ModelFile, sha256: str, legacy: str) -> None:
        with self._db.tx() as db:
            db.execute(
                "UPDATE files SET sha256 = ?, legacy_hash = ? WHERE path = ? AND size = ? AND mtime_ns = ?",
                (sha256, legacy, entry.path, entry.size, entry.mtime_ns),
            )
        self._hashes[(entry.path, entry.size, entry.mtime_ns)] = (sha256, legacy)

    # A set of files that crashed the engine while loading stays marked until one of them changes: the key holds
    # each file's size and modification time.

    @staticmethod
    def _files_key(paths: Iterable[str]) -> str:
        parts = []
        for path in sorted(set(paths)):
            try:
                stat = Path(path).stat()
            except OSError:
                return ""
            parts.append([path, stat.st_size, stat.st_mtime_ns])
        return _encode(parts).decode()

    def mark_crashed(self, paths: Iterable[str], reason: str) -> None:
        key = self._files_key(paths)
        if key:
            with self._db.tx() as db:
                db.execute("INSERT OR REPLACE INTO crashes (files, reason) VALUES (?, ?)", (key, reason))

    def crashed(self, paths: Iterable[str]) -> str | None:
        """Why these files are marked broken, if they crashed the engine and none of them changed since."""
        key = self._files_key(paths)
        with self._db.read() as db:
            row = db.execute("SELECT reason FROM crashes WHERE files = ?", (key,)).fetchone()
        return row[0] if row else None


def _under(path: Path, root: Path) -> bool:
    return path.is_relative_to(root)
