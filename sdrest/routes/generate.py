"""`POST /api/v1/generate`, `/upscale` and `/video`: validate, queue, answer 202 — or, with `?wait=true`, the
finished job or its image.

Bodies are JSON, or multipart/form-data where files are the input images (`init_image`, `mask`, `control.image`,
`ref_images`, ...) and the other parts are the fields (a part named `request` may hold the whole JSON body).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from sdrest.errors import ApiError, BadRequest, Conflict, EngineUnavailable, Invalid, from_validation, json_response
from sdrest.jobs.events import TERMINAL
from sdrest.jobs.store import COMPLETED, FINISHED, JobRecord
from sdrest.library import presets
from sdrest.library.names import BadName
from sdrest.routes.jobs import job_view, owner, services
from sdrest.schemas import (
    GenerateRequest,
    UpscaleRequest,
    VideoRequest,
    generate_decoder,
    upscale_decoder,
    video_decoder,
)
from sdrest.services import Services

_LISTS = ("ref_images", "photomaker.id_images", "loras")


async def _form_body(request: Request) -> dict[str, Any]:
    """A multipart body as the dict its JSON twin would decode to: files become base64, dotted names nest."""
    form = await request.form(
        max_files=32, max_fields=200, max_part_size=request.app.state.services.settings.max_body_bytes
    )
    data: dict[str, Any] = {}
    if isinstance(whole := form.get("request"), str):
        try:
            data = json.loads(whole)
        except ValueError as e:
            raise BadRequest(f"the request part is not valid JSON: {e}", field="request") from None
    for key, value in form.multi_items():
        if key == "request":
            continue
        if isinstance(value, UploadFile):
            item: Any = base64.b64encode(await value.read()).decode()
        else:
            try:
                item = json.loads(value)
            except ValueError:
                item = value  # a plain string field
        *parents, leaf = key.removesuffix("[]").split(".")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise Invalid(f"form field {key!r} is inside {part!r}, which is not an object", field=f"$.{part}")
        if key.removesuffix("[]") in _LISTS:
            items = target.setdefault(leaf, [])
            if not isinstance(items, list):
                name = key.removesuffix("[]")
                raise Invalid(f"form field {name!r} is a list, and was given as something else", field=f"$.{name}")
            items.append(item)
        else:
            target[leaf] = item
    return data


async def _decode(request: Request, decoder: msgspec.json.Decoder, kind: type) -> Any:
    """The request struct; for a generation naming a `preset`, the preset's values under the request's own."""
    multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
    try:
        if not multipart and kind is not GenerateRequest:
            return decoder.decode(await request.body())
        data = await _form_body(request) if multipart else msgspec.json.decode(await request.body())
        if kind is GenerateRequest and isinstance(data, dict) and isinstance(data.get("preset"), str):
            preset = await run_in_threadpool(_preset, request, data.pop("preset"))
            data = {**preset, **data}
        return msgspec.convert(data, kind, strict=not multipart)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise from_validation(e) from e


def _preset(request: Request, name: str) -> dict[str, Any]:
    store = presets.Store(services(request).catalog.models_dir, "presets")
    try:
        value: dict[str, Any] = store.read(name)
    except (BadName, FileNotFoundError, presets.PresetError) as e:
        raise Invalid(f"preset: {e}", field="$.preset") from e
    value.pop("preset", None)
    return value


async def _queue(request: Request, decoder: msgspec.json.Decoder, kind: type) -> Response:
    svc = services(request)
    if svc.build_error is not None:
        raise EngineUnavailable(svc.build_error)
    body = await _decode(request, decoder, kind)
    job, position = await run_in_threadpool(svc.submit, body, owner(request))
    if request.query_params.get("wait") in ("1", "true"):
        return await _wait(request, svc, job)
    view = job_view(svc, job)
    view.position = position
    return json_response(view, status=202, headers={"Location": view.links.self if view.links else ""})


async def generate(request: Request) -> Response:
    return await _queue(request, generate_decoder, GenerateRequest)


async def upscale(request: Request) -> Response:
    return await _queue(request, upscale_decoder, UpscaleRequest)


async def video(request: Request) -> Response:
    return await _queue(request, video_decoder, VideoRequest)


_ESTIMATED: dict[str, tuple[msgspec.json.Decoder[Any], type]] = {
    "generate": (generate_decoder, GenerateRequest),
    "upscale": (upscale_decoder, UpscaleRequest),
    "video": (video_decoder, VideoRequest),
}


async def estimate(request: Request) -> Response:
    """Would this request fit, and about how long would it take? The body of `POST /{kind}` (default generate);
    nothing is queued."""
    kind = request.query_params.get("kind", "generate")
    if kind not in _ESTIMATED:
        raise Invalid(f"kind must be one of {', '.join(_ESTIMATED)}", field="kind")
    svc = services(request)
    body = await _decode(request, *_ESTIMATED[kind])
    return json_response(await run_in_threadpool(svc.estimate, body))


def _wants_image(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return any(part.strip().startswith(("image/", "video/")) for part in accept.split(","))


async def wait_for_job(svc: Services, job: JobRecord) -> JobRecord:
    """The job once it has ended (it keeps running if the client goes away meanwhile)."""
    subscription = svc.hub.subscribe(job.id)
    try:
        current = await run_in_threadpool(svc.queue.get, job.id)
        while current.status not in FINISHED:
            event = await subscription.queue.get()
            if event.type in TERMINAL:
                current = await run_in_threadpool(svc.queue.get, job.id)
    finally:
        svc.hub.unsubscribe(job.id, subscription)
    return current


async def _wait(request: Request, svc: Services, job: JobRecord) -> Response:
    """Hold the request until the job ends: the job as JSON, or its first output for an `Accept: image/…`."""
    current = await wait_for_job(svc, job)
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
        "X-Model": getattr(getattr(spec, "model", None), "name", ""),
        "X-Generation-Time": f"{(current.finished_at or 0) - (current.started_at or 0):.3f}",
        "X-Image-Count": str(len(current.outputs)),
    }
    if hasattr(spec, "steps"):
        headers["X-Steps"] = str(spec.steps)
    if hasattr(spec, "cfg_scale"):
        headers["X-CFG-Scale"] = str(spec.cfg_scale)
    if hasattr(spec, "sampling_method"):
        headers["X-Sampler"] = spec.sampling_method
    found = await run_in_threadpool(_read_output, svc, current, output.filename)
    if isinstance(found, bytes):
        return Response(found, media_type=output.media_type, headers=headers)
    return FileResponse(found, media_type=output.media_type, headers=headers)


INLINE_BYTES = 16 * 1024 * 1024


def _read_output(svc: Services, job: JobRecord, filename: str) -> bytes | Path:
    """An output's bytes when small (one read on one thread, where a file response would hop threads to open, read
    and close it), else its path to stream."""
    _, path = svc.queue.files.output(job, filename)
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size <= INLINE_BYTES:
            return f.read()
    return path


routes = [
    Route("/generate", generate, methods=["POST"]),
    Route("/upscale", upscale, methods=["POST"]),
    Route("/video", video, methods=["POST"]),
    Route("/estimate", estimate, methods=["POST"]),
]
