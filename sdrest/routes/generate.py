"""`POST /api/v1/generate`: validate, queue, answer 202 — or, with `?wait=true`, the finished job or its image."""

from __future__ import annotations

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from sdrest.errors import ApiError, Conflict, EngineUnavailable, from_validation, json_response
from sdrest.jobs.events import TERMINAL
from sdrest.jobs.store import COMPLETED, FINISHED, JobRecord
from sdrest.routes.jobs import job_view, services
from sdrest.schemas import generate_decoder
from sdrest.services import Services


async def generate(request: Request) -> Response:
    svc = services(request)
    if svc.build_error is not None:
        raise EngineUnavailable(svc.build_error)
    body = await request.body()
    try:
        generate_request = generate_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise from_validation(e) from e
    job, position = await run_in_threadpool(svc.submit, generate_request)
    if request.query_params.get("wait") in ("1", "true"):
        return await _wait(request, svc, job)
    view = job_view(svc, job)
    view.position = position
    return json_response(view, status=202, headers={"Location": view.links.self if view.links else ""})


def _wants_image(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return any(part.strip().startswith("image/") for part in accept.split(","))


async def _wait(request: Request, svc: Services, job: JobRecord) -> Response:
    """Hold the request until the job ends (the job keeps running if the client goes away)."""
    subscription = svc.hub.subscribe(job.id)
    try:
        current = await run_in_threadpool(svc.queue.get, job.id)
        while current.status not in FINISHED:
            event = await subscription.queue.get()
            if event.type in TERMINAL:
                current = await run_in_threadpool(svc.queue.get, job.id)
    finally:
        svc.hub.unsubscribe(job.id, subscription)
    if not _wants_image(request):
        return json_response(job_view(svc, current))
    if current.status != COMPLETED:
        error = current.error or {"code": current.status, "message": f"the job was {current.status}"}
        kind = ApiError if current.status == "failed" else Conflict
        raise kind(error["message"], details={"job": current.id, "code": error.get("code")})
    output = current.outputs[0]
    spec = current.spec
    headers = {
        "X-Job-Id": current.id,
        "X-Seed": str(output.seed),
        "X-Steps": str(spec.steps),
        "X-CFG-Scale": str(spec.cfg_scale),
        "X-Sampler": spec.sampling_method,
        "X-Model": spec.model.name,
        "X-Generation-Time": f"{(current.finished_at or 0) - (current.started_at or 0):.3f}",
        "X-Image-Count": str(len(current.outputs)),
    }
    _, _, path = await run_in_threadpool(svc.queue.output, current.id, output.filename)
    return FileResponse(path, media_type=output.media_type, headers=headers)


routes = [Route("/generate", generate, methods=["POST"])]
