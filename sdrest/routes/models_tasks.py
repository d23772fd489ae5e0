"""Model work that runs as jobs: load and unload on the generation lane; validate (a plan, and a test load if asked)
in the request's thread; convert and hash on the side lane. `queued` submits a job and answers 202, or the finished
job when the client sends `?wait=1`.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sdrest.engine import oneshot
from sdrest.engine.errors import EngineError
from sdrest.errors import Invalid, decode_body, json_response
from sdrest.jobs.errors import Invalid as JobInvalid
from sdrest.jobs.store import QUEUED, JobRecord
from sdrest.library.convert import default_output
from sdrest.library.names import BadName, inside
from sdrest.library.plan import PlanError, make_plan
from sdrest.routes.generate import wait_for_job
from sdrest.routes.jobs import job_view, owner, services
from sdrest.routes.models_library import find_model
from sdrest.routes.models_requests import ConvertRequest, HashRequest, ValidateRequest
from sdrest.services import Services
from sdrest.specs import Convert, Hash, Unload


def _library_name(svc: Services, path: Path) -> str:
    return path.resolve().relative_to(svc.catalog.models_dir).as_posix()


def _job(spec: Any, request: Request) -> JobRecord:
    return JobRecord(id=uuid.uuid4().hex, status=QUEUED, created_at=time.time(), spec=spec, owner=owner(request))


async def queued(svc: Services, spec: Any, request: Request) -> Response:
    """Submit a job for `spec`, owned by the caller: 202 and its poll URL, or the finished job with `?wait=1`."""
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
        entry = find_model(svc, request.path_params["id"])
        try:
            return svc.load_job(entry, owner(request))
        except JobInvalid as e:
            raise Invalid(str(e), field="id", details=e.details) from e

    return await _submit(svc, await run_in_threadpool(plan), request)


async def unload(request: Request) -> Response:
    return await queued(services(request), Unload(), request)


async def validate(request: Request) -> Response:
    svc = services(request)
    body = decode_body(await request.body(), ValidateRequest)

    def check() -> dict[str, Any]:
        entry = find_model(svc, request.path_params["id"])
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
    body = decode_body(await request.body(), ConvertRequest)

    def spec() -> Convert:
        entry = find_model(svc, body.model, "$.model")
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

    return await queued(svc, await run_in_threadpool(spec), request)


async def hash_models(request: Request) -> Response:
    svc = services(request)
    body = decode_body(await request.body(), HashRequest)

    def spec() -> Hash:
        found = [find_model(svc, name, f"$.models[{i}]") for i, name in enumerate(body.models)]
        return Hash(models=[(e.name, e.path) for e in found])

    return await queued(svc, await run_in_threadpool(spec), request)
