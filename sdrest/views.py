"""Library entries as the API and `sdrest models --json` show them, with their loading plans, cached per library state.

A plan depends on the whole library (companions are chosen from it), so the views are computed together and kept until
a scan changes the library; `GET /api/v1/models` then answers from memory.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from sdrest.library.catalog import Catalog, ModelFile
from sdrest.library.plan import PlanError, make_plan


def model_id(name: str) -> str:
    """A model's stable, URL-safe id: derived from its library name, so it survives rescans and restarts."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


class ModelView(ModelFile):
    """A model as `sdrest models --json` and `GET /api/v1/models` show it: the library entry, whether it is broken,
    and its loading plan (`plan`: the binding arguments, null for files that do not generate) or why there is none."""

    id: str = ""
    broken: bool = False
    plan: dict[str, str] | None = None
    plan_error: str | None = None
    companions: dict[str, str] = {}


def describe(entry: ModelFile, library: Sequence[ModelFile]) -> ModelView:
    view = ModelView(**msgspec.structs.asdict(entry), id=model_id(entry.name), broken=entry.broken)
    if entry.role in ("checkpoint", "diffusion_model") and not entry.broken:
        try:
            plan = make_plan(entry, library)
        except PlanError as e:
            view.plan_error = str(e)
        else:
            view.plan, view.companions, view.warnings = plan.args, plan.companions, plan.warnings
    return view


class ModelViews:
    """Every entry's view, computed once per library state (`Catalog.version`)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._version = -1
        self._views: list[ModelView] = []

    def all(self) -> list[ModelView]:
        """The views of the current library. Blocking on a change (plans read sidecar files): call it on a thread."""
        with self._lock:
            entries = self.catalog.entries
            if self._version != self.catalog.version:
                version = self.catalog.version
                self._views = [describe(e, entries) for e in entries]
                self._version = version
            return self._views

    def invalidate(self) -> None:
        """Forget the views (a sidecar changed: plans depend on more than the model files)."""
        with self._lock:
            self._version = -1


class ModelDetail(ModelView):
    """One model with everything the library knows: its view, header metadata and what it says about training
    (LoRA tags, trigger words, base model, resolution), hashes once computed, and a preview image beside it."""

    metadata: dict[str, str] = {}
    training: dict[str, Any] = {}
    hashes: dict[str, str] | None = None
    preview: str | None = None  # URL of the preview image


_PREVIEWS = (".preview.png", ".preview.jpg", ".preview.jpeg", ".preview.webp", ".png", ".jpg", ".webp")


def preview_path(entry: ModelFile) -> Path | None:
    """A preview image kept beside the model file (`<name>.preview.png`, as A1111 and ComfyUI users keep them)."""
    path = Path(entry.path)
    for suffix in _PREVIEWS:
        candidate = path.with_name(path.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def training_facts(metadata: dict[str, str]) -> dict[str, Any]:
    """What kohya-ss and modelspec metadata say: base model, resolution, trigger words, the most used tags."""
    facts: dict[str, Any] = {}
    base = metadata.get("ss_base_model_version") or metadata.get("modelspec.architecture")
    if base:
        facts["base_model"] = base
    resolution = metadata.get("ss_resolution") or metadata.get("modelspec.resolution")
    if resolution:
        facts["resolution"] = resolution
    trigger = metadata.get("modelspec.trigger_phrase") or metadata.get("ss_output_name")
    if trigger:
        facts["trigger_words"] = [w.strip() for w in str(trigger).split(",") if w.strip()]
    frequency = metadata.get("ss_tag_frequency")
    if frequency:
        try:
            counts: dict[str, int] = {}
            for tags in json.loads(frequency).values():
                for tag, count in tags.items():
                    counts[tag.strip()] = counts.get(tag.strip(), 0) + int(count)
            facts["tags"] = [t for t, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:30]]
        except (ValueError, AttributeError, TypeError):
            pass
    return facts
