"""Library entries as the API and `sdrest models --json` show them, with their loading plans, cached per library state.

A plan depends on the whole library (companions are chosen from it), so the views are computed together and kept until
a scan changes the library; `GET /api/v1/models` then answers from memory.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import msgspec

from sdrest.library.catalog import Catalog, ModelFile
from sdrest.library.plan import PlanError, make_plan


class ModelView(ModelFile):
    """A model as `sdrest models --json` and `GET /api/v1/models` show it: the library entry, whether it is broken,
    and its loading plan (`plan`: the binding arguments, null for files that do not generate) or why there is none."""

    broken: bool = False
    plan: dict[str, str] | None = None
    plan_error: str | None = None
    companions: dict[str, str] = {}


def describe(entry: ModelFile, library: Sequence[ModelFile]) -> ModelView:
    view = ModelView(**msgspec.structs.asdict(entry), broken=entry.broken)
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
