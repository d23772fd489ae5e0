"""Model management (`/api/v1/models…`, `/api/v1/trash`, presets and prompt templates): browse, inspect, load and
unload, validate, convert, hash, download, delete and restore. All of it is the administrator's once auth exists:
these routes live in this one module so that one rule can guard them.

Every name or id a client sends resolves inside the models directory (library lookups never take paths; file names
go through `library.names.inside`); long operations are jobs on the side lane, loads and unloads jobs on the
generation lane, so none of them races a generation.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from sdrest.engine import oneshot
from sdrest.engine.errors import EngineError
from sdrest.errors import Conflict, Invalid, NotFound, from_validation, json_response
from sdrest.jobs.admission import admit_load
from sdrest.jobs.errors import Invalid as JobInvalid
from sdrest.jobs.store import QUEUED, JobRecord
from sdrest.library import presets
from sdrest.library.architectures import ROLES
from sdrest.library.catalog import ModelFile, UnknownModel, inspect_file
from sdrest.library.convert import CONVERT_TYPES, default_output
from sdrest.library.folders import FOLDERS, folder_for_role
from sdrest.library.headers import MODEL_SUFFIXES
from sdrest.library.names import BadName, inside
from sdrest.library.plan import PlanError, make_plan
from sdrest.library.trash import Trash, TrashError
from sdrest.routes.generate import wait_for_job
from sdrest.routes.jobs import job_view, owner, services
from sdrest.services import Services
from sdrest.specs import Convert, Download, Hash, Load, ModelUse, Unload
from sdrest.views import ModelDetail, model_id, preview_path, training_facts

Name = Annotated[str, Meta(min_length=1, max_length=512)]
SORTS = ("name", "size", "date", "role")


class ConvertRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: Name
    type: Literal[CONVERT_TYPES]  # type: ignore[valid-type]
    output: Name | None = None
    force: bool = False


class HashRequest(msgspec.Struct, forbid_unknown_fields=True):
    models: Annotated[list[Name], Meta(min_length=1, max_length=1000)]


class DownloadRequest(msgspec.Struct, forbid_unknown_fields=True):
    repo_id: Name | None = None
    filename: Name | None = None
    revision: Name | None = None
    url: Annotated[str, Meta(max_length=4096)] | None = None
    role: Literal[tuple(r for r in ROLES if r != "unknown")] | None = None  # type: ignore[valid-type]


class PullRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


class ValidateRequest(msgspec.Struct, forbid_unknown_fields=True):
    load: bool = False


class RestoreRequest(msgspec.Struct, forbid_unknown_fields=True):
    id: Name


def _body(raw: bytes, kind: type) -> Any:
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise from_validation(e) from e


def _find(svc: Services, key: str, field: str = "id") -> ModelFile:
    """A library entry by its id or by a name the CLI accepts; never by a path outside the library."""
    for entry in svc.catalog.entries:
        if model_id(entry.name) == key:
            return entry
    try:
        return svc.catalog.get(key)
    except UnknownModel as e:
        raise NotFound(str(e), field=field) from e


def _library_name(svc: Services, path: Path) -> str:
    return path.resolve().relative_to(svc.catalog.models_dir).as_posix()


# -- browsing ---------------------------------------------------------------------------------------------------------


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
    entry = _find(svc, key)
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
    entry = await run_in_threadpool(_find, svc, request.path_params["id"])
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


# -- jobs on the lanes ------------------------------------------------------------------------------------------------


def _job(spec: Any, request: Request) -> JobRecord:
    return JobRecord(id=uuid.uuid4().hex, status=QUEUED, created_at=time.time(), spec=spec, owner=owner(request))


async def _queued(svc: Services, spec: Any, request: Request) -> Response:
    return await _submit(svc, _job(spec, request), request)


async def _submit(svc: Services, job: JobRecord, request: Request) -> Response:
    position = await run_in_threadpool(svc.queue.submit, job)
    if request.query_params.get("wait") in ("1", "true"):
        return json_response(job_view(svc, await wait_for_job(svc, job)))
    view = job_view(svc, job)
    view.position = position
    return json_response(view, status=202, headers={"Location": view.links.self if view.links else ""})


async def load(request: Request) -> Response:
    svc = services(request)

    def plan() -> JobRecord:
        entry = _find(svc, request.path_params["id"])
        job = _job(Load(model=ModelUse(entry.name, "", {}, entry.path)), request)
        try:
            job.spec = admit_load(entry, svc.catalog, svc.settings)
            svc.fit_memory(job, None)
        except JobInvalid as e:
            raise Invalid(str(e), field="id", details=e.details) from e
        return job

    return await _submit(svc, await run_in_threadpool(plan), request)


async def unload(request: Request) -> Response:
    return await _queued(services(request), Unload(), request)


async def validate(request: Request) -> Response:
    svc = services(request)
    body = _body(await request.body(), ValidateRequest)

    def check() -> dict[str, Any]:
        entry = _find(svc, request.path_params["id"])
        report: dict[str, Any] = {"model": entry.name, "ok": not entry.broken, "errors": [], "warnings": []}
        if entry.broken:
            report["errors"].append(f"the header cannot be read: {entry.error}")
            return report
        report["warnings"] += entry.warnings
        if entry.role in ("checkpoint", "diffusion_model"):
            try:
                made = make_plan(entry, svc.catalog.entries)
                report["plan"] = made.args
                report["warnings"] += made.warnings
            except PlanError as e:
                report["ok"] = False
                report["errors"].append(str(e))
                return report
            if body.load:
                try:
                    oneshot.run("sdrest.engine.native:test_load", made.args)
                    report["loaded"] = True
                except EngineError as e:
                    report["ok"], report["loaded"] = False, False
                    report["errors"].append(f"a test load failed: {e}")
                    if getattr(e, "signal", None):
                        svc.catalog.mark_crashed(made.args.values(), f"it crashed a test load ({e.signal})")  # type: ignore[attr-defined]
                        report["broken"] = True
        return report

    return json_response(await run_in_threadpool(check))


async def convert(request: Request) -> Response:
    svc = services(request)
    body = _body(await request.body(), ConvertRequest)

    def spec() -> Convert:
        entry = _find(svc, body.model, "$.model")
        source = Path(entry.path)
        folder = source.parent
        try:
            if body.output is None:
                output = default_output(source, body.type, folder)
            else:
                output = inside(svc.catalog.models_dir, body.output, nested=True)
                if "/" not in body.output:
                    output = inside(folder, body.output)
        except BadName as e:
            raise Invalid(f"output: {e}", field="$.output") from e
        if output.suffix.lower() != ".gguf":
            raise Invalid("the output must be a .gguf file", field="$.output")
        if output.exists() and not body.force:
            raise Invalid(f"{_library_name(svc, output)} exists; send force: true to replace it", field="$.output")
        return Convert(source=entry.name, source_path=entry.path, output=_library_name(svc, output),
                       output_path=str(output), type=body.type, force=body.force)  # fmt: skip

    return await _queued(svc, await run_in_threadpool(spec), request)


async def hash_models(request: Request) -> Response:
    svc = services(request)
    body = _body(await request.body(), HashRequest)

    def spec() -> Hash:
        found = [_find(svc, name, f"$.models[{i}]") for i, name in enumerate(body.models)]
        return Hash(models=[(e.name, e.path) for e in found])

    return await _queued(svc, await run_in_threadpool(spec), request)


async def download(request: Request) -> Response:
    svc = services(request)
    body = _body(await request.body(), DownloadRequest)
    if body.url is not None:
        if not svc.settings.allow_download_urls:
            raise Invalid("downloads from plain URLs are off; set allow_download_urls = true", field="$.url")
        filename = body.filename or body.url.rsplit("/", 1)[-1].split("?")[0]
        repo = None
    else:
        if not body.repo_id or not body.filename:
            raise Invalid("give repo_id and filename (or url)", field="$.repo_id" if not body.repo_id else "$.filename")
        filename, repo = body.filename, body.repo_id
    try:
        inside(svc.catalog.models_dir, filename, nested=True)  # a repository path: plain segments, no way up
    except BadName as e:
        raise Invalid(f"filename: {e}", field="$.filename") from e
    base = Path(filename).name
    if Path(base).suffix.lower() not in MODEL_SUFFIXES:
        raise Invalid(f"{base} is not a model file sd.cpp loads ({', '.join(MODEL_SUFFIXES)})", field="$.filename")
    folder = folder_for_role(body.role) if body.role else "downloads"
    try:
        target = inside(svc.catalog.models_dir / folder, base)
    except BadName as e:
        raise Invalid(str(e), field="$.filename") from e
    if target.exists():
        raise Conflict(f"{folder}/{base} exists in the library")
    spec = Download(
        repo_id=repo, filename=filename, revision=body.revision, url=body.url, role=body.role, folder=folder
    )
    return await _queued(svc, spec, request)


async def pull(request: Request) -> Response:
    """Queue a download job for every file of a starter model the library does not have yet."""
    from sdrest.library import starters

    svc = services(request)
    body = _body(await request.body(), PullRequest)
    try:
        starter = starters.starter(body.name)
    except KeyError as e:
        raise NotFound(str(e.args[0]), field="$.name") from None
    jobs = []
    for file in starter.files:
        folder = folder_for_role(file.role)
        if (svc.catalog.models_dir / folder / Path(file.filename).name).exists():
            continue
        spec = Download(repo_id=file.repo_id, filename=file.filename, revision=file.revision, role=file.role,
                        folder=folder)  # fmt: skip
        job = JobRecord(id=uuid.uuid4().hex, status=QUEUED, created_at=time.time(), spec=spec, owner=owner(request))
        await run_in_threadpool(svc.queue.submit, job)
        jobs.append(job_view(svc, job))
    return json_response({"name": starter.name, "jobs": jobs}, status=202)


async def list_starters(request: Request) -> Response:
    from sdrest.library import starters

    return json_response({"starters": list(starters.STARTERS.values())})


async def remote(request: Request) -> Response:
    from sdrest.library import downloads  # huggingface_hub is slow to import: only when asked

    svc = services(request)
    repo_id = request.query_params.get("repo_id")
    if not repo_id:
        raise Invalid("repo_id is required", field="repo_id")
    try:
        files = await run_in_threadpool(
            downloads.list_remote, repo_id, request.query_params.get("revision"), token=svc.settings.hf_token or None
        )
    except downloads.DownloadError as e:
        raise NotFound(str(e), field="repo_id") from e
    return json_response({"repo_id": repo_id, "files": files})


# -- delete, trash ----------------------------------------------------------------------------------------------------


def _trash(svc: Services) -> Trash:
    return Trash(svc.settings.data_dir / "trash", svc.catalog.models_dir)


async def delete_model(request: Request) -> Response:
    svc = services(request)

    def move() -> dict[str, Any]:
        entry = _find(svc, request.path_params["id"])
        loaded = svc.queue.loaded_plan() or {}
        if entry.path in loaded.values():
            raise Conflict(f"{entry.name} is loaded; unload it first (POST /api/v1/models/unload)")
        record = _trash(svc).put(entry)
        svc.views.invalidate()
        svc.catalog.scan()
        return msgspec.to_builtins(record)

    return json_response(await run_in_threadpool(move))


async def list_trash(request: Request) -> Response:
    return json_response({"trash": await run_in_threadpool(_trash(services(request)).list)})


async def restore(request: Request) -> Response:
    svc = services(request)
    body = _body(await request.body(), RestoreRequest)

    def put_back() -> dict[str, Any]:
        try:
            record = _trash(svc).restore(body.id)
        except (TrashError, BadName) as e:
            raise Invalid(str(e), field="$.id") from e
        svc.catalog.scan()
        return msgspec.to_builtins(record)

    return json_response(await run_in_threadpool(put_back))


# -- presets and prompt templates -------------------------------------------------------------------------------------


def _kind(request: Request) -> str:
    return request.url.path.removeprefix("/api/v1/").split("/", 1)[0]


def _store(svc: Services, request: Request) -> presets.Store:
    return presets.Store(svc.catalog.models_dir, _kind(request))


def _preset_call(svc: Services, request: Request, action: str, value: Any = None) -> Any:
    store = _store(svc, request)
    name = request.path_params.get("name", "")
    try:
        if action == "list":
            return {"names": store.names()}
        if action == "read":
            return {"name": name, "value": store.read(name)}
        if action in ("create", "update"):
            store.write(name, value, create=action == "create")
            return {"name": name, "value": value}
        store.delete(name)
        return None
    except BadName as e:
        raise Invalid(str(e), field="name") from e
    except FileNotFoundError as e:
        raise NotFound(str(e)) from e
    except FileExistsError as e:
        raise Conflict(str(e)) from e
    except presets.PresetError as e:
        raise Invalid(str(e), field="$") from e


async def preset_route(request: Request) -> Response:
    svc = services(request)
    method = request.method
    name = request.path_params.get("name")
    if name is None:
        return json_response(await run_in_threadpool(_preset_call, svc, request, "list"))
    if method == "GET":
        return json_response(await run_in_threadpool(_preset_call, svc, request, "read"))
    if method == "DELETE":
        await run_in_threadpool(_preset_call, svc, request, "delete")
        return Response(status_code=204)
    raw = await request.body()
    if _kind(request) == "presets":
        try:
            value: Any = msgspec.json.decode(raw)
        except msgspec.DecodeError as e:
            raise Invalid(f"a preset is a JSON object: {e}", field="$") from e
        if not isinstance(value, dict):
            raise Invalid("a preset is a JSON object of generation fields", field="$")
    else:
        value = raw.decode("utf-8", "replace")
    action = "create" if method == "POST" else "update"
    status = 201 if method == "POST" else 200
    return json_response(await run_in_threadpool(_preset_call, svc, request, action, value), status=status)


routes = [
    Route("/models", list_models, methods=["GET"]),
    Route("/models/roles", roles, methods=["GET"]),
    Route("/models/directories", directories, methods=["GET"]),
    Route("/models/stats", stats, methods=["GET"]),
    Route("/models/refresh", refresh, methods=["POST"]),
    Route("/models/unload", unload, methods=["POST"]),
    Route("/models/convert", convert, methods=["POST"]),
    Route("/models/hash", hash_models, methods=["POST"]),
    Route("/models/download", download, methods=["POST"]),
    Route("/models/remote", remote, methods=["GET"]),
    Route("/models/pull", pull, methods=["POST"]),
    Route("/models/starters", list_starters, methods=["GET"]),
    Route("/models/{id:path}/load", load, methods=["POST"]),
    Route("/models/{id:path}/validate", validate, methods=["POST"]),
    Route("/models/{id:path}/preview", model_preview, methods=["GET"]),
    Route("/models/{id:path}", get_model, methods=["GET"]),
    Route("/models/{id:path}", delete_model, methods=["DELETE"]),
    Route("/trash", list_trash, methods=["GET"]),
    Route("/trash", restore, methods=["POST"]),
    *(Route(f"/{kind}", preset_route, methods=["GET"]) for kind in presets.KINDS),
    *(Route(f"/{kind}/{{name}}", preset_route, methods=["GET", "POST", "PUT", "DELETE"]) for kind in presets.KINDS),
]
