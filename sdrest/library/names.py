"""Names a client sends for files under a folder (presets, trash entries, download targets): checked so that they
resolve inside that folder and nowhere else."""

from __future__ import annotations

from pathlib import Path

MAX_NAME = 255


class BadName(ValueError):
    """A name that could leave its folder or is not a plain name."""


def inside(root: Path, name: str, *, nested: bool = False) -> Path:
    """`root / name`, refusing `..`, absolute paths, NUL bytes, backslashes, hidden and over-long names, and (unless
    `nested`) subfolders; and refusing a result that resolves outside `root` through a symlink."""
    if not name or len(name) > MAX_NAME:
        raise BadName(f"a name must be 1 to {MAX_NAME} characters")
    if "\0" in name or "\\" in name:
        raise BadName("a name cannot contain NUL or backslash")
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise BadName(f"{name!r} is not a plain name inside its folder")
    if any(part.startswith(".") for part in parts):
        raise BadName(f"{name!r} would be hidden (library scans skip names that start with '.')")
    if len(parts) > 1 and not nested:
        raise BadName(f"{name!r} names a subfolder; give a plain file name")
    path = root / name
    resolved_root = root.resolve()
    if not path.resolve().is_relative_to(resolved_root):
        raise BadName(f"{name!r} leads out of its folder")
    return path
