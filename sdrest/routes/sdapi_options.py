"""A1111's `options`: this family's own state (the checkpoint, VAE and clip skip A1111 clients set globally), read
and set through `/sdapi/v1/options`. A request's `override_settings` apply to that request only.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sdrest.jobs.admission import GENERATORS, choose_model
from sdrest.jobs.store import COMPLETED
from sdrest.routes.generate import wait_for_job
from sdrest.routes.jobs import owner, services
from sdrest.routes.sdapi_errors import A1111Error, a1111_errors
from sdrest.routes.sdapi_requests import json_body, model_name
from sdrest.services import Services

DEFAULT_OPTIONS: dict[str, Any] = {
    "sd_model_checkpoint": None,
    "sd_vae": "Automatic",
    "CLIP_stop_at_last_layers": 1,
    "samples_format": "png",
    "sd_checkpoint_hash": None,
}


def current_options(request: Request) -> dict[str, Any]:
    """This family's options, kept on the app's state (the defaults until a client sets them)."""
    state = request.app.state
    if not hasattr(state, "sdapi_options"):
        state.sdapi_options = dict(DEFAULT_OPTIONS)
    options: dict[str, Any] = state.sdapi_options
    return options


def current_checkpoint(svc: Services) -> str | None:
    """What A1111 would call the current checkpoint: the loaded model, else the library's first generating one (A1111
    always has one loaded; clients that never set one expect that)."""
    loaded = svc.queue.loaded_plan() or {}
    main = loaded.get("model_path") or loaded.get("diffusion_model_path")
    entry = svc.catalog.find_path(main) if main else None
    if entry is not None:
        return entry.name
    names = sorted(v.name for v in svc.views.all() if v.role in GENERATORS and not v.broken and v.plan is not None)
    return names[0] if names else None


@a1111_errors
async def get_options(request: Request) -> Response:
    options = current_options(request)
    if options.get("sd_model_checkpoint") is None:
        options["sd_model_checkpoint"] = await run_in_threadpool(current_checkpoint, services(request))
    return JSONResponse(options)


@a1111_errors
async def set_options(request: Request) -> Response:
    """Store the options (unknown keys too: Open WebUI posts back the whole dict it read); a new
    `sd_model_checkpoint` is loaded through the queue before the call returns."""
    svc = services(request)
    payload = await json_body(request)
    options = current_options(request)
    wanted = model_name(payload.get("sd_model_checkpoint"))
    if wanted and wanted != model_name(options.get("sd_model_checkpoint")):
        await _load(request, svc, wanted)
    options.update(payload)
    if wanted:
        options["sd_model_checkpoint"] = wanted
    return JSONResponse(None)


async def _load(request: Request, svc: Services, name: str) -> None:
    """Load the model `name` through the queue, as A1111 loads a checkpoint when it is chosen."""

    # The plan and options an image job of it gets, so the txt2img that follows finds the model loaded.
    who = owner(request)
    job = await run_in_threadpool(lambda: svc.load_job(choose_model(svc.catalog, name, None), who))
    await run_in_threadpool(svc.queue.submit, job)
    done = await wait_for_job(svc, job)
    if done.status != COMPLETED:
        raise A1111Error(500, (done.error or {}).get("message", f"loading {name} {done.status}"))
