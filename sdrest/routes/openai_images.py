"""The OpenAI Images API under `/v1`: generations (optionally streamed), edits, variations and the model list.

Each request becomes a native `GenerateRequest` (`openai_requests`) and goes through the one job queue. Every error on
these routes answers in OpenAI's shape (`openai_errors`), never in the native one; `response_format: url` answers with
signed URLs (`openai_files`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Match, Route

from sdrest import images
from sdrest.errors import EngineUnavailable, from_validation, json_response
from sdrest.jobs.admission import GENERATORS
from sdrest.jobs.events import TERMINAL
from sdrest.jobs.modes import REF_IMAGE_ARCHITECTURES
from sdrest.jobs.store import COMPLETED, FINISHED, JobRecord
from sdrest.library.catalog import ModelFile, UnknownModel
from sdrest.routes.generate import wait_for_job
from sdrest.routes.jobs import owner, services
from sdrest.routes.openai_errors import (
    Endpoint,
    OpenAIError,
    from_native,
    missing_parameter,
    model_not_found,
    openai_errors,
    unknown_parameter,
)
from sdrest.routes.openai_errors import openai_error as openai_error
from sdrest.routes.openai_files import get_file, signed_urls
from sdrest.routes.openai_requests import (
    ImageOptions,
    as_base64,
    input_size,
    native_fields,
    native_request,
    parse_size,
    read_form,
    read_prompt,
    resolve_model,
    split_fields,
)
from sdrest.schemas import GenerateRequest
from sdrest.services import Services

HEARTBEAT_SECONDS = 15.0
VARIATION_STRENGTH = 0.6


# -- routes -----------------------------------------------------------------------------------------------------------


def _ready(request: Request) -> Services:
    svc = services(request)
    if svc.build_error is not None:
        raise EngineUnavailable(svc.build_error)
    return svc


async def generations(request: Request) -> Response:
    svc = _ready(request)
    try:
        data = msgspec.json.decode(await request.body())
    except msgspec.DecodeError as e:
        raise from_native(from_validation(e)) from e
    if not isinstance(data, dict):
        raise OpenAIError(400, "the body must be a JSON object")
    options, extras = split_fields(data, strict=True)
    prompt, from_prompt = read_prompt(options)
    model = (await run_in_threadpool(resolve_model, svc, options.model))[0] if options.model else None
    native = native_fields(options, prompt, model, parse_size(options.size))
    generate = native_request(native, extras, from_prompt, strict=True)
    return await _answer(request, svc, generate, options, "image_generation")


async def edits(request: Request) -> Response:
    svc = _ready(request)
    fields, files = await read_form(request)
    pictures, masks = files.pop("image", []), files.pop("mask", [])
    if files:
        raise unknown_parameter(next(iter(files)))
    if not pictures:
        raise missing_parameter("image")
    if len(masks) > 1:
        raise OpenAIError(400, "give one mask", param="mask")
    options, extras = split_fields(fields, strict=False)
    prompt, from_prompt = read_prompt(options)
    model, arch = await run_in_threadpool(resolve_model, svc, options.model)
    size = parse_size(options.size) or await run_in_threadpool(input_size, pictures[0], arch, svc.settings)
    encoded = [as_base64(p) for p in pictures]
    mode: dict[str, Any]
    if masks:  # inpainting: transparent pixels of the mask are repainted
        mode = {"init_image": encoded[0], "mask": as_base64(masks[0])}
        if len(encoded) > 1:
            mode["ref_images"] = encoded[1:]
    elif len(encoded) > 1 or arch in REF_IMAGE_ARCHITECTURES:
        mode = {"ref_images": encoded}
    else:
        mode = {"init_image": encoded[0]}
    native = native_fields(options, prompt, model, size, **mode)
    generate = native_request(native, extras, from_prompt, strict=False)
    return await _answer(request, svc, generate, options, "image_edit")


async def variations(request: Request) -> Response:
    svc = _ready(request)
    fields, files = await read_form(request)
    pictures = files.pop("image", [])
    if files:
        raise unknown_parameter(next(iter(files)))
    if len(pictures) != 1:
        raise missing_parameter("image") if not pictures else OpenAIError(400, "give one image", param="image")
    options, extras = split_fields(fields, strict=False)
    if options.stream:
        raise OpenAIError(400, "variations are not streamed", param="stream")
    prompt, from_prompt = read_prompt(options, required=False)
    model, arch = await run_in_threadpool(resolve_model, svc, options.model)
    size = parse_size(options.size) or await run_in_threadpool(input_size, pictures[0], arch, svc.settings)
    native = native_fields(options, prompt, model, size, init_image=as_base64(pictures[0]), strength=VARIATION_STRENGTH)
    generate = native_request(native, extras, from_prompt, strict=False)
    return await _answer(request, svc, generate, options, "image_generation")


async def _answer(
    request: Request, svc: Services, native: GenerateRequest, options: ImageOptions, kind: str
) -> Response:
    """Queue the job, wait for it and answer with its images (or stream its progress as events)."""
    job, _ = await run_in_threadpool(svc.submit, native, owner(request))
    if options.stream:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(_events(svc, job, options, kind), media_type="text/event-stream", headers=headers)
    current = await wait_for_job(svc, job)
    if current.status != COMPLETED:
        raise _job_error(current)
    if options.response_format == "url":
        data = [{"url": url} for url in await signed_urls(request, current)]
    else:
        data = [{"b64_json": b64} for b64 in await run_in_threadpool(_read_outputs, svc, current)]
    body: dict[str, Any] = {"created": int(current.finished_at or time.time()), "data": data, **_echo(current, options)}
    return json_response(body)


def _echo(job: JobRecord, options: ImageOptions) -> dict[str, Any]:
    """What newer OpenAI responses repeat of the request: the format, size, quality and background used."""
    first = job.outputs[0] if job.outputs else None
    echo: dict[str, Any] = {
        "background": "opaque",
        "output_format": getattr(job.spec, "output_format", "png"),
        "size": f"{first.width}x{first.height}" if first else options.size or "auto",
    }
    if options.quality in ("low", "medium", "high"):
        echo["quality"] = options.quality
    return echo


def _job_error(job: JobRecord) -> OpenAIError:
    error = job.error or {}
    message = error.get("message") or f"the job was {job.status}"
    # The same request would fail the same way: OpenAI's clients would otherwise retry a 500 twice.
    return OpenAIError(500, message, code=error.get("code") or job.status, headers={"X-Should-Retry": "false"})


def _read_outputs(svc: Services, job: JobRecord) -> list[str]:
    return [
        base64.b64encode(svc.queue.output(job.id, output.filename)[2].read_bytes()).decode() for output in job.outputs
    ]


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: ".encode() + msgspec.json.encode(data) + b"\n\n"


_USAGE = {"input_tokens": 0, "input_tokens_details": {"image_tokens": 0, "text_tokens": 0}, "output_tokens": 0,
          "total_tokens": 0}  # fmt: skip


async def _events(svc: Services, job: JobRecord, options: ImageOptions, kind: str) -> AsyncIterator[bytes]:
    """OpenAI's image stream: up to `partial_images` of the job's live previews, evenly spread over its steps, then
    one `completed` event per image (or an `error` event)."""
    subscription = svc.hub.subscribe(job.id)
    try:
        wanted = options.partial_images or 0
        steps = getattr(job.spec, "steps", 1)
        marks = [max(1, round(steps * (i + 1) / (wanted + 1))) for i in range(wanted)]
        fmt = getattr(job.spec, "output_format", "png")
        size = f"{getattr(job.spec, 'width', 0)}x{getattr(job.spec, 'height', 0)}"
        shared = {"size": size, "quality": options.quality or "auto", "background": "opaque", "output_format": fmt}
        current = await run_in_threadpool(svc.queue.get, job.id)
        while current.status not in FINISHED:
            try:
                event = await asyncio.wait_for(subscription.queue.get(), timeout=HEARTBEAT_SECONDS)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if event.type == "preview" and marks and event.data.get("step", 0) >= marks[0]:
                marks.pop(0)
                partial = await run_in_threadpool(_reencode, event.data["image"], fmt)
                yield _sse(f"{kind}.partial_image", {
                    "type": f"{kind}.partial_image", "b64_json": partial, "created_at": int(time.time()),
                    "partial_image_index": wanted - len(marks) - 1, **shared,
                })  # fmt: skip
            elif event.type in TERMINAL:
                current = await run_in_threadpool(svc.queue.get, job.id)
        if current.status != COMPLETED:
            yield _sse("error", {"type": "error", **_job_error(current).body()})
            return
        outputs = await run_in_threadpool(_read_outputs, svc, current)
        for output, b64 in zip(current.outputs, outputs, strict=True):
            yield _sse(f"{kind}.completed", {
                "type": f"{kind}.completed", "b64_json": b64, "created_at": int(current.finished_at or time.time()),
                **shared, "size": f"{output.width}x{output.height}", "usage": _USAGE,
            })  # fmt: skip
    finally:
        svc.hub.unsubscribe(job.id, subscription)


def _reencode(data_url: str, fmt: str) -> str:
    """A preview (a JPEG data URL) as base64 in the requested format."""
    b64 = data_url.partition(",")[2]
    if fmt == "jpeg":
        return b64
    with Image.open(io.BytesIO(base64.b64decode(b64))) as preview:
        return base64.b64encode(images.encode_image(preview, fmt, None)).decode()


# -- models -----------------------------------------------------------------------------------------------------------


def _model_object(entry: ModelFile) -> dict[str, Any]:
    return {"id": entry.name, "object": "model", "created": entry.mtime_ns // 1_000_000_000, "owned_by": "sdrest"}


async def list_models(request: Request) -> Response:
    entries = sorted(services(request).catalog.entries, key=lambda e: e.name)
    data = [_model_object(e) for e in entries if e.role in GENERATORS and not e.broken]
    return json_response({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    name = request.path_params["id"]
    try:
        entry = await run_in_threadpool(services(request).catalog.get, name, GENERATORS)
    except UnknownModel as e:
        raise model_not_found(name, str(e)) from e
    if entry.broken:
        raise model_not_found(name, f"it cannot be read: {entry.error}")
    return json_response(_model_object(entry))


# -- routing ----------------------------------------------------------------------------------------------------------


async def fallback(request: Request) -> Response:
    """What no route of this family takes: OPTIONS (204 with `Allow`; SillyTavern pings with it), another method (405)
    or another path (404), in OpenAI's shape."""
    allowed = {m for route in routes[:-1] if route.matches(request.scope)[0] != Match.NONE for m in route.methods or ()}
    if not allowed:
        raise OpenAIError(404, f"no route {request.url.path}", code="not_found")
    allow = ", ".join(sorted(allowed | {"OPTIONS"}))
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": allow})
    raise OpenAIError(405, f"{request.method} is not allowed here", headers={"Allow": allow})


_ENDPOINTS: list[tuple[str, Endpoint, list[str]]] = [
    ("/images/generations", generations, ["POST"]),
    ("/images/edits", edits, ["POST"]),
    ("/images/variations", variations, ["POST"]),
    ("/models", list_models, ["GET"]),
    ("/models/{id:path}", get_model, ["GET"]),
    ("/files/{job_id}/{filename:path}", get_file, ["GET"]),
]
routes = [
    *(Route(path, openai_errors(f), methods=m, name=f"openai_{f.__name__}") for path, f, m in _ENDPOINTS),
    Route("/{rest:path}", openai_errors(fallback), methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
]
