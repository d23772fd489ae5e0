"""Model hashes: SHA-256 of the whole file (streamed), AUTOMATIC1111's AutoV2 and its legacy 8-hex "model hash"."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import msgspec

_BLOCK = 1 << 20


class Hashes(msgspec.Struct):
    """The hashes tools print and match against: `autov2` is what A1111 and civitai show as the short hash."""

    sha256: str
    autov2: str
    legacy: str


def legacy_hash(path: Path) -> str:
    """A1111's old model hash: SHA-256 of the 64 KiB at offset 1 MiB, first 8 hex digits."""
    with open(path, "rb") as f:
        f.seek(0x100000)
        return hashlib.sha256(f.read(0x10000)).hexdigest()[:8]


def sha256_file(path: Path, progress: Callable[[int, int], None] | None = None) -> str:
    """SHA-256 of the file, read in 1 MiB blocks; `progress(done, total)` after each block."""
    total = path.stat().st_size
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


def hashes_of(sha256: str, legacy: str) -> Hashes:
    return Hashes(sha256, sha256[:10], legacy)
