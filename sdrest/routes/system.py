"""Server information: health, versions, samplers, schedulers, limits, and the model library."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sdrest import __version__, host
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
    Names,
    QueueSummary,
    StepLimits,
    Version,
    WorkerStatus,
)
from sdrest.services import Services


async def health(request: Request) -> Response:
    svc = services(request)
    snapshot = svc.queue.snapshot()
    worker = await run_in_threadpool(_worker_status, svc)
    status = "ok" if svc.build_error is None else "degraded"
    queue = QueueSummary(len(snapshot["queued"]), snapshot["running"])
    return json_response(Health(status, worker, queue, svc.build_error))


def _worker_status(svc: Services) -> WorkerStatus:
    """The worker's state with the loaded model's library name (reads /proc for its memory: call on a thread)."""
    worker = msgspec.convert(svc.engine.status(), WorkerStatus)
    if worker.loaded:
        main = worker.loaded.get("model_path") or worker.loaded.get("diffusion_model_path")
        entry = svc.catalog.find_path(main) if main else None
        worker.model = entry.name if entry is not None else None
    return worker


def _system(svc: Services) -> dict[str, Any]:
    info = svc.build_info
    return {
        "cpu": {**host.cpu(), "physical_cores": info.get("physical_cores"), "features": info.get("cpu_features", [])},
        "memory": host.memory(),
        "backend": info.get("backend"),
        "backends": info.get("backends", []),
        "devices": info.get("devices", []),
        "disks": {"models": host.disk(svc.catalog.models_dir), "data": host.disk(svc.settings.data_dir)},
        "worker": msgspec.to_builtins(_worker_status(svc)),
        "engine_error": svc.build_error,
    }


async def system(request: Request) -> Response:
    svc = services(request)
    await asyncio.to_thread(svc.ready.wait, 30)
    return json_response(await run_in_threadpool(_system, svc))


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
    available = (await run_in_threadpool(host.memory))["available"]
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
            memory_available_bytes=available,
        )
    )


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/system", system, methods=["GET"]),
    Route("/version", version, methods=["GET"]),
    Route("/samplers", samplers, methods=["GET"]),
    Route("/schedulers", schedulers, methods=["GET"]),
    Route("/limits", limits, methods=["GET"]),
]
