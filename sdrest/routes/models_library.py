"""Browsing the model library: the listing (filtered, sorted, paged), one model's detail and preview image, the
counts by role, the typed folders, the totals and the rescan; and `find_model`, the lookup every model route uses.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from sdrest.errors import Invalid, NotFound, json_response
from sdrest.library.architectures import ROLES
from sdrest.library.catalog import ModelFile, UnknownModel, inspect_file
from sdrest.library.folders import FOLDERS, folder_for_role
from sdrest.library.headers import MODEL_SUFFIXES
from sdrest.routes.jobs import services
from sdrest.routes.models_requests import SORTS
from sdrest.services import Services
from sdrest.views import ModelDetail, model_id, preview_path, training_facts


def find_model(svc: Services, key: str, field: str = "id") -> ModelFile:
    """A library entry by its id or by a name the CLI accepts; never by a path outside the library."""
    for entry in svc.catalog.entries:
        if model_id(entry.name) == key:
            return entry
    try:
        return svc.catalog.get(key)
    except UnknownModel as e:
        raise NotFound(str(e), field=field) from e


async def list_models(request: Request) -> Response:
    svc = services(request)
    q = request.query_params
    if q.get("refresh") in ("1", "true"):
        svc.views.invalidate()
        await run_in_threadpool(svc.catalog.scan)
    views = await run_in_threadpool(svc.views.all)
    sort, order = q.get("sort", "name"), q.get("order", "asc")
    if sort not in SORTS:
        raise Invalid(f"sort must be one of {', '.join(SORTS)}", field="sort")
    if order not in ("asc", "desc"):
        raise Invalid("order must be asc or desc", field="order")
    try:
        page, limit = int(q.get("page", 1)), int(q.get("limit", 1000))
    except ValueError:
        raise Invalid("page and limit must be integers", field="page") from None
    if page < 1 or not 1 <= limit <= 1000:
        raise Invalid("page must be at least 1 and limit 1-1000", field="limit" if page >= 1 else "page")
    role, arch, search = q.get("role"), q.get("architecture"), (q.get("search") or "").lower()
    shown = [
        v
        for v in views
        if (role is None or v.role == role)
        and (arch is None or v.architecture == arch)
        and (not search or search in v.name.lower())
    ]
    keys = {"name": lambda v: v.name.lower(), "size": lambda v: v.size, "date": lambda v: v.mtime_ns,
            "role": lambda v: (v.role, v.name.lower())}  # fmt: skip
    shown.sort(key=keys[sort], reverse=order == "desc")
    start = (page - 1) * limit
    return json_response({"models": shown[start : start + limit], "total": len(shown), "page": page, "limit": limit})


def _detail(svc: Services, key: str) -> ModelDetail:
    entry = find_model(svc, key)
    view = next((v for v in svc.views.all() if v.name == entry.name), None)
    base = msgspec.structs.asdict(view) if view is not None else msgspec.structs.asdict(entry)
    detail = ModelDetail(**base)
    if not entry.broken:
        _, metadata = inspect_file(Path(entry.path), entry.name)
        detail.metadata = {k: v if len(v) <= 2000 else v[:2000] + "…" for k, v in metadata.items()}
        detail.training = training_facts(metadata)
        cached = svc.catalog.cached_hashes(entry)
        if cached:
            detail.hashes = {"sha256": cached[0], "autov2": cached[0][:10], "legacy": cached[1]}
    if preview_path(entry) is not None:
        detail.preview = f"/api/v1/models/{model_id(entry.name)}/preview"
    return detail


async def get_model(request: Request) -> Response:
    svc = services(request)
    return json_response(await run_in_threadpool(_detail, svc, request.path_params["id"]))


async def model_preview(request: Request) -> Response:
    svc = services(request)
    entry = await run_in_threadpool(find_model, svc, request.path_params["id"])
    path = preview_path(entry)
    if path is None:
        raise NotFound(f"{entry.name} has no preview image beside it")
    return FileResponse(path, headers={"Cache-Control": "max-age=300"})


async def roles(request: Request) -> Response:
    svc = services(request)
    views = await run_in_threadpool(svc.views.all)
    counts = {role: sum(1 for v in views if v.role == role) for role in ROLES}
    return json_response({"roles": [{"role": r, "count": c, "folder": folder_for_role(r)} for r, c in counts.items()]})


def _directories(svc: Services) -> list[dict[str, Any]]:
    root = svc.catalog.models_dir
    result = []
    for folder, role in FOLDERS.items():
        path = root / folder
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
        result.append({
            "name": folder, "role": role, "path": str(path), "exists": path.is_dir(),
            "writable": os.access(path if path.is_dir() else root, os.W_OK),
            "files": sum(1 for p in files if p.suffix.lower() in MODEL_SUFFIXES or role is None),
            "bytes": sum(p.stat().st_size for p in files),
        })  # fmt: skip
    return result


async def directories(request: Request) -> Response:
    return json_response({"directories": await run_in_threadpool(_directories, services(request))})


async def stats(request: Request) -> Response:
    svc = services(request)
    views = await run_in_threadpool(svc.views.all)
    by_role: dict[str, dict[str, int]] = {}
    for v in views:
        slot = by_role.setdefault(v.role, {"files": 0, "bytes": 0})
        slot["files"] += 1
        slot["bytes"] += v.size
    usage = await run_in_threadpool(shutil.disk_usage, svc.catalog.models_dir)
    return json_response({
        "files": len(views), "bytes": sum(v.size for v in views), "broken": sum(1 for v in views if v.broken),
        "by_role": by_role, "disk_free": usage.free, "models_dir": str(svc.catalog.models_dir),
    })  # fmt: skip


async def refresh(request: Request) -> Response:
    svc = services(request)
    svc.views.invalidate()
    entries = await run_in_threadpool(svc.catalog.scan)
    return json_response({"files": len(entries)})
