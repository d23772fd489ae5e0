"""Jobs: look them up, list them, cancel, delete, follow them (SSE), fetch their outputs and previews.

Handlers never touch SQLite or files on the event loop: store reads and file work run on threads.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from sdrest import images
from sdrest.access import principal_of
from sdrest.errors import BadRequest, NotFound, json_response
from sdrest.jobs.events import TERMINAL, Event
from sdrest.jobs.store import COMPLETED, FINISHED, QUEUED, RUNNING, JobRecord
from sdrest.schemas import MAX_SEARCH, Job, JobError, JobLinks, JobList, Output, Progress, QueuedJob, QueueState
from sdrest.services import Services
from sdrest.specs import KINDS, public_params

HEARTBEAT_SECONDS = 15.0
PREFIX = "/api/v1"


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def viewer(request: Request) -> str | None:
    """Whose jobs the caller may see: None (every job) for admins and when auth is off, else their own name."""
    return principal_of(request.scope).viewer


def owner(request: Request) -> str | None:
    """Who a new job belongs to (None when auth is off)."""
    principal = principal_of(request.scope)
    return None if principal.source == "none" else principal.name


def job_view(svc: Services, job: JobRecord) -> Job:
    """The API's view of a job: record, live position and progress, output URLs, links."""
    base = f"{PREFIX}/jobs/{job.id}"
    progress = svc.queue.progress(job.id) if job.status == RUNNING else None
    model = getattr(job.spec, "model", None)
    return Job(
        id=job.id,
        status=job.status,
        kind=job.kind,
        created_at=job.created_at,
        model=model.name if model is not None else None,
        architecture=model.architecture if model is not None else None,
        position=svc.queue.position(job.id) if job.status in (QUEUED, RUNNING) else None,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=msgspec.convert(progress, Progress) if progress else None,
        params=public_params(job.spec),
        outputs=[
            Output(o.filename, f"{base}/output/{o.filename}", o.seed, o.width, o.height, o.media_type)
            for o in job.outputs
        ],
        warnings=job.warnings,
        timings=job.timings,
        result=job.result,
        error=msgspec.convert(job.error, JobError) if job.error else None,
        links=JobLinks(self=base, events=f"{base}/events"),
    )


async def get_job(request: Request) -> Response:
    svc = services(request)
    job = await run_in_threadpool(svc.queue.get, request.path_params["id"], viewer(request))
    return json_response(job_view(svc, job))


async def list_jobs(request: Request) -> Response:
    svc = services(request)
    status = request.query_params.get("status")
    if status is not None and status not in (QUEUED, RUNNING, *FINISHED):
        raise BadRequest(f"status must be one of queued, running, {', '.join(FINISHED)}", field="status")
    try:
        limit = int(request.query_params.get("limit", 50))
        offset = int(request.query_params.get("offset", 0))
    except ValueError:
        raise BadRequest("limit and offset must be integers") from None
    if not (1 <= limit <= 500 and 0 <= offset < 2**63):  # SQLite's integers are 64-bit
        raise BadRequest("limit must be 1-500 and offset 0 to 2**63-1")
    kinds = tuple(k for k in request.query_params.get("kind", "").split(",") if k)
    if unknown := sorted(set(kinds) - set(KINDS)):
        raise BadRequest(f"unknown kind {', '.join(unknown)}; kinds: {', '.join(KINDS)}", field="kind")
    text = request.query_params.get("q", "")
    if len(text) > MAX_SEARCH:
        raise BadRequest(f"q is limited to {MAX_SEARCH} characters", field="q")
    model = request.query_params.get("model")
    jobs, total = await run_in_threadpool(
        functools.partial(svc.store.page, status, limit, offset, viewer(request), kinds=kinds, model=model, text=text)
    )
    return json_response(JobList([job_view(svc, j) for j in jobs], total, limit, offset))


async def cancel_job(request: Request) -> Response:
    svc = services(request)
    job = await run_in_threadpool(svc.queue.cancel, request.path_params["id"], viewer(request))
    return json_response(job_view(svc, job))


async def delete_job(request: Request) -> Response:
    await run_in_threadpool(services(request).queue.delete, request.path_params["id"], viewer(request))
    return Response(status_code=204)


async def queue_state(request: Request) -> Response:
    svc = services(request)
    snapshot = svc.queue.snapshot()
    who = viewer(request)
    mine = (
        None
        if who is None
        else await run_in_threadpool(svc.queue.owned_by, who, [snapshot["running"], *snapshot["queued"]])
    )
    progress = msgspec.convert(snapshot["progress"], Progress) if snapshot["progress"] else None
    queued = [QueuedJob(job_id, i) for i, job_id in enumerate(snapshot["queued"], start=1)]
    length = len(queued)
    running = snapshot["running"]
    if mine is not None:  # others' jobs count, but their ids and progress are not shown
        queued = [q for q in queued if q.id in mine]
        running, progress = (running, progress) if running in mine else (None, None)
    return json_response(QueueState(running, progress, queued, length, svc.settings.queue_size))


def _thumb_size(request: Request) -> int | None:
    """The thumbnail's side, None for the file itself; a `size` given is checked either way."""
    try:
        size = int(request.query_params.get("size", 256))
    except ValueError:
        raise BadRequest("size must be an integer", field="size") from None
    if not 1 <= size <= 1024:
        raise BadRequest("size must be between 1 and 1024", field="size")
    return size if request.query_params.get("thumb") in ("1", "true") else None


async def get_output(request: Request) -> Response:
    svc = services(request)
    size = _thumb_size(request)
    job, output, path = await run_in_threadpool(
        svc.queue.output, request.path_params["id"], request.path_params["filename"], viewer(request)
    )
    if size is not None:
        data = await run_in_threadpool(lambda: images.thumbnail(path.read_bytes(), size))
        return Response(data, media_type=images.sniff_media_type(data))
    return FileResponse(path, media_type=output.media_type, filename=output.filename, content_disposition_type="inline")


async def get_preview(request: Request) -> Response:
    svc = services(request)
    job = await run_in_threadpool(svc.queue.get, request.path_params["id"], viewer(request))
    preview = svc.queue.preview(job.id)
    if preview is None:
        raise NotFound(f"job {job.id} has no preview (ask for one with the request's `preview` field)")
    step, data = preview
    return Response(data, media_type="image/jpeg", headers={"X-Step": str(step), "Cache-Control": "no-store"})


def _sse(event_type: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event_type}\ndata: ".encode() + msgspec.json.encode(data) + b"\n\n"


def current_state(svc: Services, job: JobRecord) -> tuple[str, dict[str, Any]]:
    """The event that tells a late listener where the job stands."""
    if job.status == QUEUED:
        return "queued", {"position": svc.queue.position(job.id)}
    if job.status == RUNNING:
        return "started", {"started_at": job.started_at, "progress": svc.queue.progress(job.id)}
    if job.status == COMPLETED:
        return "completed", {"outputs": [o.filename for o in job.outputs], "timings": job.timings}
    return job.status, {"error": job.error} if job.error else {}


async def job_events(request: Request) -> Response:
    svc = services(request)
    job = await run_in_threadpool(svc.queue.get, request.path_params["id"], viewer(request))
    try:
        heartbeat = float(request.query_params.get("heartbeat", HEARTBEAT_SECONDS))
    except ValueError:
        raise BadRequest("heartbeat must be a number of seconds", field="heartbeat") from None
    if not 0.05 <= heartbeat <= 300:
        raise BadRequest("heartbeat must be between 0.05 and 300 seconds", field="heartbeat")

    async def stream() -> Any:
        subscription = svc.hub.subscribe(job.id)
        try:
            # The state event's id is taken before the state is read: every event published earlier is already in
            # that state (the store is written before each publish), so such events are skipped, not repeated.
            state_id = svc.hub.next_id()
            latest = await run_in_threadpool(svc.store.get, job.id)
            kind, data = current_state(svc, latest or job)
            yield _sse(kind, {"job": job.id, **data}, state_id)
            if kind in TERMINAL:
                return
            while True:
                try:
                    event: Event = await asyncio.wait_for(subscription.queue.get(), timeout=heartbeat)
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                if event.id < state_id:
                    continue
                yield _sse(event.type, {"job": job.id, **event.data}, event.id)
                if event.type in TERMINAL:
                    return
        finally:
            svc.hub.unsubscribe(job.id, subscription)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


routes = [
    Route("/jobs", list_jobs, methods=["GET"]),
    Route("/jobs/{id}", get_job, methods=["GET"]),
    Route("/jobs/{id}", delete_job, methods=["DELETE"]),
    Route("/jobs/{id}/cancel", cancel_job, methods=["POST"]),
    Route("/jobs/{id}/events", job_events, methods=["GET"]),
    Route("/jobs/{id}/output/{filename:path}", get_output, methods=["GET"]),
    Route("/jobs/{id}/preview", get_preview, methods=["GET"]),
    Route("/queue", queue_state, methods=["GET"]),
]
