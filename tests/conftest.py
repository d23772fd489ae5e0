"""Shared fixtures: model files with random weights (built once into the fixture cache) and libraries made of them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures import real


class Library:
    """A models directory for one test: files are hard links to the cached fixtures, named as a user would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def add(self, layout: str, name: str) -> Path:
        """Place fixture `layout` at `name` (e.g. "checkpoints/sd15.safetensors") as a header-only file: its real
        header over a sparse data area, for tests that never load weights."""
        target = self.root / name
        return real.build(layout, directory=target.parent, filename=target.name, weights=False)

    def add_weights(self, layout: str, name: str) -> Path:
        """Place fixture `layout` at `name` with its random weights, for tests that load it through the binding."""
        target = self.root / name
        return real.build(layout, directory=target.parent, filename=target.name)

    def write(self, name: str, data: bytes) -> Path:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target

    def link(self, source: Path, name: str) -> Path:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            target.symlink_to(source)
        return target


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return Library(tmp_path / "models")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(scope="session")
def fixture_path() -> Callable[[str], Path]:
    """`fixture_path("sd1-full")`: the cached random-weight file of that layout."""
    return real.build
