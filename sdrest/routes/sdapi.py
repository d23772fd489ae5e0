"""The AUTOMATIC1111 API family (`/sdapi/v1`), so A1111 clients (Open WebUI, SillyTavern, LibreChat, Krita and
Photoshop plugins, `webuiapi`) work unchanged. Requests map onto the native job specs (`sdapi_requests`) and go through
the one queue; responses and errors (`sdapi_errors`) have A1111's shapes; unknown fields are ignored, as A1111 ignores
them. This module holds the generation, extras and progress routes, and the family's route table; the listings are in
`sdapi_info` and the options in `sdapi_options`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sdrest import images
from sdrest.errors import from_validation
from sdrest.jobs.store import COMPLETED, JobRecord
from sdrest.routes.generate import wait_for_job
from sdrest.routes.jobs import owner, services, viewer
from sdrest.routes.sdapi_errors import A1111Error, a1111_errors
from sdrest.routes.sdapi_errors import a1111_error as a1111_error
from sdrest.routes.sdapi_info import (
    cmd_flags,
    embeddings,
    latent_upscale_modes,
    loras,
    memory,
    refresh_checkpoints,
    samplers,
    schedulers,
    sd_models,
    sd_modules,
    sd_vae,
    upscalers,
)
from sdrest.routes.sdapi_options import current_checkpoint, current_options, get_options, set_options
from sdrest.routes.sdapi_requests import json_body, native_request, upscale_request
from sdrest.schemas import GenerateRequest, UpscaleRequest
from sdrest.services import Services


async def _run(request: Request, native: dict[str, Any], kind: type) -> JobRecord:
    """Queue a native request and wait for it; a client that goes away has its job cancelled (as SillyTavern
    expects when it disconnects, then calls interrupt)."""
    svc = services(request)
    try:
        body: GenerateRequest | UpscaleRequest = msgspec.convert(native, kind)
    except msgspec.ValidationError as e:
        raise A1111Error(422, from_validation(e).message) from None
    job, _ = await run_in_threadpool(svc.submit, body, owner(request))
    waiting = asyncio.ensure_future(wait_for_job(svc, job))
    while not waiting.done():
        await asyncio.wait({waiting}, timeout=0.5)
        if not waiting.done() and await request.is_disconnected():
            waiting.cancel()
            await run_in_threadpool(svc.queue.cancel, job.id)
            raise A1111Error(499, "the client went away; the job was cancelled")
    done = waiting.result()
    if done.status != COMPLETED:
        message = (done.error or {}).get("message", f"the job was {done.status}")
        raise A1111Error(500 if done.status == "failed" else 409, message)
    return done


def _read(svc: Services, job: JobRecord) -> list[tuple[bytes, str]]:
    """Each output's bytes and infotext."""
    found = []
    for output in job.outputs:
        _, _, path = svc.queue.output(job.id, output.filename)
        data = path.read_bytes()
        found.append((data, images.read_infotext(data) or ""))
    return found


async def _generate(request: Request, img2img: bool) -> Response:
    svc = services(request)
    payload = await json_body(request)
    options = current_options(request)
    if not options.get("sd_model_checkpoint"):
        options["sd_model_checkpoint"] = await run_in_threadpool(current_checkpoint, svc)
    native = native_request(payload, options, img2img)
    job = await _run(request, native, GenerateRequest)
    outputs = await run_in_threadpool(_read, svc, job)
    spec = job.spec
    model = getattr(spec, "model", None)
    texts = [text for _, text in outputs]
    hires = native.get("hires") or {}
    hash_text = images.parse_infotext(texts[0]).get("Model hash") if texts and texts[0] else None
    info = {
        "prompt": payload.get("prompt", ""),
        "all_prompts": [payload.get("prompt", "")] * len(outputs),
        "negative_prompt": payload.get("negative_prompt", ""),
        "seed": job.outputs[0].seed if job.outputs else -1,
        "all_seeds": [o.seed for o in job.outputs],
        "subseed": -1,
        "all_subseeds": [-1] * len(outputs),
        "width": job.outputs[0].width if job.outputs else native["width"],
        "height": job.outputs[0].height if job.outputs else native["height"],
        "sampler_name": images.SAMPLER_NAMES.get(getattr(spec, "sampling_method", ""), ""),
        "steps": getattr(spec, "steps", 0),
        "cfg_scale": getattr(spec, "cfg_scale", 0.0),
        "sd_model_name": Path(model.name).stem if model is not None else None,
        "sd_model_hash": hash_text,
        "batch_size": len(outputs),
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.created_at)),
        "infotexts": texts,
        "denoising_strength": native.get("strength") if img2img else hires.get("denoising_strength"),
    }
    return JSONResponse({
        "images": [base64.b64encode(data).decode() for data, _ in outputs],
        "parameters": payload,
        "info": json.dumps(info),
    })  # fmt: skip


@a1111_errors
async def txt2img(request: Request) -> Response:
    return await _generate(request, img2img=False)


@a1111_errors
async def img2img(request: Request) -> Response:
    return await _generate(request, img2img=True)


@a1111_errors
async def extra_single_image(request: Request) -> Response:
    svc = services(request)
    payload = await json_body(request)
    job = await _run(request, upscale_request(payload.get("image", ""), payload), UpscaleRequest)
    ((data, _),) = await run_in_threadpool(_read, svc, job)
    return JSONResponse({"html_info": "", "image": base64.b64encode(data).decode()})


@a1111_errors
async def extra_batch_images(request: Request) -> Response:
    svc = services(request)
    payload = await json_body(request)
    results = []
    items = payload.get("imageList") or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise A1111Error(422, 'imageList must be a list of {"data": <base64 image>}')
    for item in items:
        job = await _run(request, upscale_request(item.get("data", ""), payload), UpscaleRequest)
        ((data, _),) = await run_in_threadpool(_read, svc, job)
        results.append(base64.b64encode(data).decode())
    return JSONResponse({"html_info": "", "images": results})


@a1111_errors
async def png_info(request: Request) -> Response:
    payload = await json_body(request)
    text = payload.get("image")
    if not isinstance(text, str) or not text.strip():
        raise A1111Error(422, "image is required: a base64 PNG, JPEG or WebP")
    if "," in text[:100] and text.startswith("data:"):
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4))
        info = await run_in_threadpool(images.read_infotext, data) or ""
    except ValueError as e:  # not base64, or not an image (images.ImageError)
        raise A1111Error(422, f"image: {e}") from None
    parsed = images.parse_infotext(info) if info else {}
    return JSONResponse({"info": info, "items": {"parameters": info} if info else {}, "parameters": parsed})


@a1111_errors
async def progress(request: Request) -> Response:
    svc = services(request)
    snapshot = svc.queue.snapshot()
    running, live = snapshot["running"], snapshot["progress"] or {}
    job_count = len(snapshot["queued"]) + (1 if running else 0)
    who = viewer(request)
    if running and who is not None and not await run_in_threadpool(svc.queue.owned_by, who, [running]):
        running, live = None, {}  # someone else's job counts, as in GET /api/v1/queue, but is not shown
    current = None
    if running and request.query_params.get("skip_current_image", "false").lower() != "true":
        preview = svc.queue.preview(running)
        if preview is not None:
            current = base64.b64encode(preview[1]).decode()
    state = {
        "skipped": False, "interrupted": False, "job": running or "", "job_count": job_count,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"), "job_no": 0,
        "sampling_step": live.get("step", 0), "sampling_steps": live.get("steps", 0),
    }  # fmt: skip
    eta = live.get("eta_seconds") or 0.0
    return JSONResponse({"progress": live.get("fraction", 0.0) if running else 0.0, "eta_relative": eta,
                         "state": state, "current_image": current, "textinfo": None})  # fmt: skip


@a1111_errors
async def interrupt(request: Request) -> Response:
    svc = services(request)
    running = svc.queue.snapshot()["running"]
    if running:
        await run_in_threadpool(svc.queue.cancel, running, viewer(request))
    return JSONResponse(None)


routes = [
    Route("/txt2img", txt2img, methods=["POST"]),
    Route("/img2img", img2img, methods=["POST"]),
    Route("/extra-single-image", extra_single_image, methods=["POST"]),
    Route("/extra-batch-images", extra_batch_images, methods=["POST"]),
    Route("/png-info", png_info, methods=["POST"]),
    Route("/progress", progress, methods=["GET"]),
    Route("/interrupt", interrupt, methods=["POST"]),
    Route("/skip", interrupt, methods=["POST"]),
    Route("/options", get_options, methods=["GET"]),
    Route("/options", set_options, methods=["POST"]),
    Route("/sd-models", sd_models, methods=["GET"]),
    Route("/sd-vae", sd_vae, methods=["GET"]),
    Route("/sd-modules", sd_modules, methods=["GET"]),
    Route("/loras", loras, methods=["GET"]),
    Route("/embeddings", embeddings, methods=["GET"]),
    Route("/samplers", samplers, methods=["GET"]),
    Route("/schedulers", schedulers, methods=["GET"]),
    Route("/upscalers", upscalers, methods=["GET"]),
    Route("/latent-upscale-modes", latent_upscale_modes, methods=["GET"]),
    Route("/memory", memory, methods=["GET"]),
    Route("/cmd-flags", cmd_flags, methods=["GET"]),
    Route("/refresh-checkpoints", refresh_checkpoints, methods=["POST"]),
]
