"""Deleting a model moves it (and its sidecars: `.json`, `.preview.png`, ...) to a trash folder under the data
directory, from which it can be restored; nothing is unlinked."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import msgspec

from sdrest.library.catalog import ModelFile
from sdrest.library.names import inside

SIDECAR_SUFFIXES = (".json", ".preview.png", ".preview.jpg", ".preview.jpeg", ".preview.webp", ".civitai.info")


class TrashEntry(msgspec.Struct):
    id: str
    name: str  # the library name it had
    size: int
    deleted_at: float
    files: list[str]  # file names kept, the model first
    folder: str = ""  # the folder it was in, relative to the models directory ("" in entries from before: `name`'s)


class TrashError(RuntimeError):
    """A trash entry cannot be restored (unknown, or its place in the library is taken)."""


def sidecars(path: Path) -> list[Path]:
    """The files that belong to a model file: `<stem>.json`, `<file>.json`, `<stem>.preview.png`, ..."""
    found = []
    for suffix in SIDECAR_SUFFIXES:
        for candidate in (path.with_name(path.stem + suffix), path.with_name(path.name + suffix)):
            if candidate.is_file() and candidate not in found:
                found.append(candidate)
    return found


class Trash:
    def __init__(self, root: Path, models_dir: Path) -> None:
        self.root = root
        self.models_dir = models_dir

    def put(self, entry: ModelFile) -> TrashEntry:
        path = Path(entry.path)
        trash_id = uuid.uuid4().hex
        folder = self.root / trash_id
        folder.mkdir(parents=True)
        moved = []
        for source in [path, *sidecars(path)]:
            shutil.move(source, folder / source.name)
            moved.append(source.name)
        # The folder itself, not `name`'s: names are relative to the library root, which is models/models for an
        # AUTOMATIC1111 install.
        try:
            folder_name = path.parent.relative_to(self.models_dir.resolve()).as_posix()
        except ValueError:
            folder_name = ""  # not under the models directory: restored by its name, as before
        record = TrashEntry(trash_id, entry.name, entry.size, time.time(), moved, folder_name)
        (folder / "trash.json").write_bytes(msgspec.json.encode(record))
        return record

    def list(self) -> list[TrashEntry]:
        entries = []
        if self.root.is_dir():
            for info in self.root.glob("*/trash.json"):
                try:
                    entries.append(msgspec.json.decode(info.read_bytes(), type=TrashEntry))
                except (OSError, msgspec.DecodeError):
                    continue
        return sorted(entries, key=lambda e: -e.deleted_at)

    def restore(self, trash_id: str) -> TrashEntry:
        """Put an entry back where it was; refuses to overwrite a file that took its place."""
        if len(trash_id) != 32 or not all(c in "0123456789abcdef" for c in trash_id):
            raise TrashError(f"no trash entry {trash_id!r}")
        folder = self.root / trash_id
        try:
            record = msgspec.json.decode((folder / "trash.json").read_bytes(), type=TrashEntry)
        except (OSError, msgspec.DecodeError):
            raise TrashError(f"no trash entry {trash_id!r}") from None
        placed = f"{record.folder}/{Path(record.name).name}" if record.folder not in ("", ".") else record.name
        target = inside(self.models_dir, placed, nested=True).parent
        clashes = [name for name in record.files if (target / name).exists()]
        if clashes:
            raise TrashError(f"{', '.join(clashes)} exists in the library again; move it away first")
        target.mkdir(parents=True, exist_ok=True)
        for name in record.files:
            shutil.move(folder / name, target / name)  # a rename on the same device
        shutil.rmtree(folder, ignore_errors=True)
        return record
