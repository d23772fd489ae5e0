"""Presets (saved parameter sets, JSON in `models/presets/`) and prompt templates (text in `models/prompts/` and
`models/neg_prompts/`): list, read, write, delete, by plain names that stay inside their folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sdrest.library.names import inside

KINDS = {"presets": ".json", "prompts": ".txt", "neg_prompts": ".txt"}
MAX_SIZE = 256 * 1024


class PresetError(ValueError):
    """A preset or template that cannot be read or written as asked."""


class Store:
    """One kind's folder under the models directory."""

    def __init__(self, models_dir: Path, kind: str) -> None:
        if kind not in KINDS:
            raise PresetError(f"unknown kind {kind!r}")
        self.kind, self.suffix = kind, KINDS[kind]
        self.root = models_dir / kind

    def path(self, name: str) -> Path:
        return inside(self.root, name.removesuffix(self.suffix) + self.suffix)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name.removesuffix(self.suffix) for p in self.root.glob(f"*{self.suffix}") if p.is_file())

    def read(self, name: str) -> Any:
        path = self.path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no {self.kind[:-1]} named {name!r}")
        text = path.read_text()
        if self.suffix == ".json":
            try:
                data = json.loads(text)
            except ValueError as e:
                raise PresetError(f"the preset {name} is not valid JSON: {e}") from e
            if not isinstance(data, dict):
                raise PresetError(f"the preset {name} must hold a JSON object")
            return data
        return text

    def write(self, name: str, value: Any, *, create: bool) -> None:
        """Create (refusing an existing name) or replace (refusing a missing one)."""
        path = self.path(name)
        if create and path.exists():
            raise FileExistsError(f"a {self.kind[:-1]} named {name!r} exists")
        if not create and not path.exists():
            raise FileNotFoundError(f"no {self.kind[:-1]} named {name!r}")
        text = json.dumps(value, indent=2) if self.suffix == ".json" else str(value)
        if len(text.encode()) > MAX_SIZE:
            raise PresetError(f"limited to {MAX_SIZE} bytes")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def delete(self, name: str) -> None:
        path = self.path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no {self.kind[:-1]} named {name!r}")
        path.unlink()
