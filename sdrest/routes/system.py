"""Server information: health, versions, samplers, schedulers, limits, and the model library."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sdrest import __version__
from sdrest.errors import json_response
from sdrest.library.plan import describe
from sdrest.routes.jobs import services
from sdrest.schemas import MAX_PROMPT, OUTPUT_FORMATS, PREVIEW_METHODS, SAMPLERS, SCHEDULERS


async def health(request: Request) -> Response:
    svc = services(request)
    snapshot = svc.queue.snapshot()
    worker = svc.engine.status()
    status = "ok" if svc.build_error is None else "degraded"
    return json_response(
        {
            "status": status,
            "worker": worker,
            "queue": {"length": len(snapshot["queued"]), "running": snapshot["running"]},
            "engine_error": svc.build_error,
        }
    )


async def version(request: Request) -> Response:
    svc = services(request)
    await asyncio.to_thread(svc.ready.wait, 30)
    info = svc.build_info
    return json_response(
        {
            "sdrest": __version__,
            "binding": info.get("binding"),
            "sd_cpp": info.get("sd_cpp"),
            "backend": info.get("backend"),
            "backends": info.get("backends", []),
            "tinyblas": info.get("tinyblas"),
            "engine_error": svc.build_error,
        }
    )


async def samplers(request: Request) -> Response:
    return json_response({"samplers": list(SAMPLERS), "default": "euler_a for UNet models, euler for DiT models"})


async def schedulers(request: Request) -> Response:
    return json_response({"schedulers": list(SCHEDULERS), "default": "discrete (sd.cpp picks per model)"})


async def limits(request: Request) -> Response:
    s = services(request).settings
    return json_response(
        {
            "min_side": 64,
            "max_side": s.max_side,
            "max_pixels": s.max_pixels,
            "max_batch": s.max_batch,
            "max_prompt_chars": min(s.max_prompt_chars, MAX_PROMPT),
            "steps": {"min": 1, "max": 150},
            "queue_size": s.queue_size,
            "max_body_bytes": s.max_body_bytes,
            "output_formats": list(OUTPUT_FORMATS),
            "preview_methods": list(PREVIEW_METHODS),
        }
    )


async def models(request: Request) -> Response:
    svc = services(request)
    if request.query_params.get("refresh") in ("1", "true"):
        await asyncio.to_thread(svc.catalog.scan)
    entries = svc.catalog.entries
    role = request.query_params.get("role")
    shown = [e for e in entries if role is None or e.role == role]
    return json_response({"models": [describe(e, entries) for e in shown]})


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/version", version, methods=["GET"]),
    Route("/samplers", samplers, methods=["GET"]),
    Route("/schedulers", schedulers, methods=["GET"]),
    Route("/limits", limits, methods=["GET"]),
    Route("/models", models, methods=["GET"]),
]
