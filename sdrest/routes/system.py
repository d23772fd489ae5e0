"""Server information: health, versions, samplers, schedulers, limits, and the model library."""

from __future__ import annotations

import asyncio

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sdrest import __version__
from sdrest.errors import json_response
from sdrest.routes.jobs import services
from sdrest.schemas import (
    MAX_PROMPT,
    OUTPUT_FORMATS,
    PREVIEW_METHODS,
    SAMPLERS,
    SCHEDULERS,
    Health,
    Limits,
    ModelList,
    Names,
    QueueSummary,
    StepLimits,
    Version,
    WorkerStatus,
)


async def health(request: Request) -> Response:
    svc = services(request)
    snapshot = svc.queue.snapshot()
    worker = svc.engine.status()
    status = "ok" if svc.build_error is None else "degraded"
    queue = QueueSummary(len(snapshot["queued"]), snapshot["running"])
    return json_response(Health(status, msgspec.convert(worker, WorkerStatus), queue, svc.build_error))


async def version(request: Request) -> Response:
    svc = services(request)
    await asyncio.to_thread(svc.ready.wait, 30)
    info = svc.build_info
    return json_response(
        Version(
            sdrest=__version__,
            binding=info.get("binding"),
            sd_cpp=info.get("sd_cpp"),
            backend=info.get("backend"),
            backends=info.get("backends", []),
            tinyblas=info.get("tinyblas"),
            engine_error=svc.build_error,
        )
    )


async def samplers(request: Request) -> Response:
    return json_response(Names(list(SAMPLERS), "euler_a for UNet models, euler for DiT models"))


async def schedulers(request: Request) -> Response:
    return json_response(Names(list(SCHEDULERS), "sd.cpp's choice for the model and sampler (usually discrete)"))


async def limits(request: Request) -> Response:
    s = services(request).settings
    return json_response(
        Limits(
            min_side=64,
            max_side=s.max_side,
            max_pixels=s.max_pixels,
            max_batch=s.max_batch,
            max_prompt_chars=min(s.max_prompt_chars, MAX_PROMPT),
            steps=StepLimits(1, 150),
            queue_size=s.queue_size,
            max_body_bytes=s.max_body_bytes,
            output_formats=list(OUTPUT_FORMATS),
            preview_methods=list(PREVIEW_METHODS),
        )
    )


async def models(request: Request) -> Response:
    svc = services(request)
    if request.query_params.get("refresh") in ("1", "true"):
        svc.views.invalidate()
        await asyncio.to_thread(svc.catalog.scan)
    views = await asyncio.to_thread(svc.views.all)
    role = request.query_params.get("role")
    return json_response(ModelList([v for v in views if role is None or v.role == role]))


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/version", version, methods=["GET"]),
    Route("/samplers", samplers, methods=["GET"]),
    Route("/schedulers", schedulers, methods=["GET"]),
    Route("/limits", limits, methods=["GET"]),
    Route("/models", models, methods=["GET"]),
]
