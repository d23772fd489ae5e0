"""The partial file a download writes into, and its move into the models library once whole and checked.

It lives under `partial_dir` (outside the models library, so a scan never sees half a file), named by a hash of where
its bytes come from: `<hash>.part`, and `<hash>.json` saying what it holds, so a later attempt resumes it, and never
onto other content. Only a file whose SHA-256 matches the published one is moved into `dest`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import msgspec

from sdrest.library.download_errors import DownloadError

CHUNK = 1 << 20  # bytes read or copied at a time


class PartialInfo(msgspec.Struct, forbid_unknown_fields=True):
    """The sidecar of a partial file: what its bytes are, so a resume never appends to other content."""

    source: str
    sha256: str | None = None
    size: int | None = None
    validator: str | None = None  # the server's ETag or Last-Modified, sent back as If-Range


class Partial:
    """An open, locked partial file with its sidecar, and the running hash of the bytes it holds."""

    def __init__(self, path: Path, file: IO[bytes], info: PartialInfo) -> None:
        self.path = path
        self.sidecar = path.with_suffix(".json")
        self.file = file
        self.info = info
        self.hash = hashlib.sha256()
        self.done = 0

    def restart(self) -> None:
        self.file.seek(0)
        self.file.truncate()
        self.hash = hashlib.sha256()
        self.done = 0

    def write(self, data: bytes) -> None:
        try:
            self.file.write(data)
        except OSError as e:  # not the network's fault, so never retried as a dropped connection
            raise DownloadError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.hash.update(data)
        self.done += len(data)

    def check_space(self) -> None:
        needed = (self.info.size or 0) - self.done
        free = shutil.disk_usage(self.path.parent).free
        if needed > free:
            raise DownloadError(f"not enough free space in {self.path.parent}: {needed} bytes needed, {free} free")

    def save_info(self) -> None:
        self.sidecar.write_bytes(msgspec.json.encode(self.info))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)


@contextmanager
def open_partial(partial_dir: Path, info: PartialInfo) -> Iterator[Partial]:
    """Open (or resume) the partial file for `info.source`, locked against a second download of the same file."""
    partial_dir.mkdir(parents=True, exist_ok=True)
    path = partial_dir / (hashlib.sha256(info.source.encode()).hexdigest()[:32] + ".part")
    with open(path, "a+b") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DownloadError("this file is already being downloaded by another job") from None
        part = Partial(path, file, info)
        try:
            kept = msgspec.json.decode(part.sidecar.read_bytes(), type=PartialInfo)
        except (OSError, msgspec.DecodeError):
            kept = None
        if kept is not None and _same_content(kept, info):
            part.info = msgspec.structs.replace(kept, size=info.size or kept.size)
            _hash_existing(part)
        else:
            part.restart()
        part.save_info()
        yield part


def _same_content(kept: PartialInfo, wanted: PartialInfo) -> bool:
    """Whether a partial file holds the start of the file now wanted (else it is started again)."""
    sizes_agree = wanted.size is None or kept.size in (None, wanted.size)
    return kept.source == wanted.source and kept.sha256 == wanted.sha256 and sizes_agree


def _hash_existing(part: Partial) -> None:
    part.file.seek(0)
    while data := part.file.read(CHUNK):
        part.hash.update(data)
        part.done += len(data)


def refuse_existing(dest: Path) -> None:
    """A download never replaces a file: `dest` must not exist."""
    if dest.exists():
        raise DownloadError(f"{dest} already exists")


def finish(part: Partial, sha256: str | None, dest: Path) -> None:
    """Check the whole file's hash, then move it into `dest` without ever showing a half-written file there."""
    got = part.hash.hexdigest()
    if sha256 is not None and got != sha256.lower():
        part.remove()
        raise DownloadError(f"checksum mismatch: expected {sha256}, got {got}; the download was removed, try again")
    part.file.flush()
    os.fsync(part.file.fileno())
    _place(part.path, dest)
    part.remove()


def _place(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)  # atomic, and refuses to replace a file that appeared meanwhile
        return
    except FileExistsError:
        raise DownloadError(f"{dest} already exists") from None
    except OSError:
        pass  # another filesystem, or one without hard links: copy beside dest, then rename
    temp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(source, "rb") as src, open(temp, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
        refuse_existing(dest)
        os.replace(temp, dest)
    finally:
        temp.unlink(missing_ok=True)
