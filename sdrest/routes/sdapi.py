"""The AUTOMATIC1111 API family (`/sdapi/v1`), so A1111 clients (Open WebUI, SillyTavern, LibreChat, Krita and
Photoshop plugins, `webuiapi`) work unchanged. Requests map onto the native job specs and go through the one queue;
responses and errors have A1111's shapes; unknown fields are ignored, as A1111 ignores them.

`options` is this family's own state (the checkpoint, VAE and clip skip A1111 clients set globally); a request's
`override_settings` apply to that request only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sdrest import host, images
from sdrest.errors import ApiError, from_domain, from_validation
from sdrest.jobs.admission import choose_model
from sdrest.jobs.errors import JobsError
from sdrest.jobs.infotexts import HIRES_LABELS
from sdrest.jobs.store import COMPLETED, QUEUED, JobRecord
from sdrest.library.plan import PlanError, make_plan
from sdrest.routes.generate import wait_for_job
from sdrest.routes.jobs import owner, services, viewer
from sdrest.schemas import SAMPLERS, SCHEDULERS, GenerateRequest, UpscaleRequest
from sdrest.services import Services
from sdrest.specs import Load, ModelUse
from sdrest.views import ModelView

GENERATORS = ("checkpoint", "diffusion_model")
_BY_LABEL = {label.lower(): sid for sid, label in images.SAMPLER_NAMES.items()}
_SCHEDULE_BY_LABEL = {label.lower(): sid for sid, label in images.SCHEDULE_TYPES.items()}
_HIRES_BY_LABEL = {label.lower(): mode for mode, label in HIRES_LABELS.items()}
DEFAULT_OPTIONS: dict[str, Any] = {
    "sd_model_checkpoint": None,
    "sd_vae": "Automatic",
    "CLIP_stop_at_last_layers": 1,
    "samples_format": "png",
    "sd_checkpoint_hash": None,
}


class A1111Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _shaped(status: int, kind: str, message: str) -> Response:
    """An error as A1111 (FastAPI) renders it: `{"error", "detail", "body", "errors"}`."""
    return JSONResponse({"error": kind, "detail": message, "body": "", "errors": message}, status_code=status)


def a1111_error(error: ApiError) -> Response:
    """A native error (the auth middleware's 401/403) in this family's shape."""
    return _shaped(error.status, "HTTPException", error.message)


def _a1111(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Render every error of this family in A1111's shape."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except A1111Error as e:
            return _shaped(e.status, "HTTPException", e.message)
        except JobsError as e:
            error = from_domain(e)
            return _shaped(error.status, type(e).__name__, error.message)
        except ApiError as e:
            if e.status >= 500:
                raise
            return _shaped(e.status, type(e).__name__, e.message)

    return wrapped


async def _json(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError as e:
        raise A1111Error(422, f"the body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise A1111Error(422, "the body must be a JSON object")
    return data


def _options(request: Request) -> dict[str, Any]:
    state = request.app.state
    if not hasattr(state, "sdapi_options"):
        state.sdapi_options = dict(DEFAULT_OPTIONS)
    options: dict[str, Any] = state.sdapi_options
    return options


def _text(value: Any, name: str) -> str | None:
    """A text field of a payload: None or a string (anything else is the client's error, not a crash)."""
    if value is None or isinstance(value, str):
        return value
    raise A1111Error(422, f"{name} must be a string")


def _model_name(title: Any) -> str | None:
    """A library name from an A1111 title (`checkpoints/x.safetensors [abcdef0123]`)."""
    title = _text(title, "sd_model_checkpoint")
    if not title:
        return None
    return title.rsplit(" [", 1)[0].strip() if title.endswith("]") else title.strip()


def sampler(name: str | None, scheduler: str | None = None) -> tuple[str | None, str | None]:
    """(sd.cpp sampler, scheduler) for an A1111 sampler name: its label ("DPM++ 2M"), an sd.cpp id, or an old combined
    name ("DPM++ 2M Karras"), whose schedule part becomes the scheduler unless one is given."""
    chosen_scheduler = _scheduler(scheduler)
    name = _text(name, "sampler_name")
    if not name:
        return None, chosen_scheduler
    key = name.strip().lower()
    if key in SAMPLERS:
        return key, chosen_scheduler
    if key in _BY_LABEL:
        return _BY_LABEL[key], chosen_scheduler
    for label, schedule in sorted(_SCHEDULE_BY_LABEL.items(), key=lambda kv: -len(kv[0])):
        if key.endswith(" " + label) and key[: -len(label) - 1] in _BY_LABEL:
            return _BY_LABEL[key[: -len(label) - 1]], chosen_scheduler or schedule
    raise A1111Error(422, f"unknown sampler {name!r}; GET /sdapi/v1/samplers lists them")


def _scheduler(name: str | None) -> str | None:
    name = _text(name, "scheduler")
    if not name or name.lower() == "automatic":
        return None
    key = name.strip().lower()
    if key in SCHEDULERS:
        return key
    if key in _SCHEDULE_BY_LABEL:
        return _SCHEDULE_BY_LABEL[key]
    raise A1111Error(422, f"unknown scheduler {name!r}; GET /sdapi/v1/schedulers lists them")


def _hires_upscaler(name: str | None) -> str:
    name = _text(name, "hr_upscaler")
    if not name or name.lower() in ("none", "latent"):
        return "latent"
    return _HIRES_BY_LABEL.get(name.lower(), name)


def _native(payload: dict[str, Any], options: dict[str, Any], img2img: bool) -> dict[str, Any]:
    """A native generation request (as a dict) for an A1111 txt2img/img2img payload."""
    override = payload.get("override_settings") or {}
    settings = {**options, **(override if isinstance(override, dict) else {})}
    sampler_id, scheduler_id = sampler(payload.get("sampler_name") or payload.get("sampler_index"),
                                       payload.get("scheduler"))  # fmt: skip
    try:
        count = int(payload.get("batch_size") or 1) * int(payload.get("n_iter") or 1)
    except (TypeError, ValueError):
        raise A1111Error(422, "batch_size and n_iter must be whole numbers") from None
    native: dict[str, Any] = {
        "prompt": payload.get("prompt", ""),
        "negative_prompt": payload.get("negative_prompt", ""),
        "model": _model_name(settings.get("sd_model_checkpoint")),
        "width": payload.get("width", 512),
        "height": payload.get("height", 512),
        "steps": payload.get("steps", 20),
        "cfg_scale": payload.get("cfg_scale", 7.0),
        "seed": payload.get("seed", -1) if payload.get("seed", -1) is not None else -1,
        "batch_count": count,
        "sampling_method": sampler_id,
        "scheduler": scheduler_id,
        "output_format": "jpeg"
        if str(settings.get("samples_format", "png")).lower() in ("jpg", "jpeg")
        else "webp"
        if str(settings.get("samples_format")).lower() == "webp"
        else "png",  # fmt: skip
    }
    clip_skip = settings.get("CLIP_stop_at_last_layers")
    if isinstance(clip_skip, int) and clip_skip > 1:
        native["clip_skip"] = clip_skip
    vae = settings.get("sd_vae")
    if isinstance(vae, str) and vae not in ("Automatic", "None", ""):
        native["vae"] = vae
    if payload.get("eta") is not None:
        native["eta"] = payload["eta"]
    if img2img:
        init = payload.get("init_images") or []
        if not init or not isinstance(init, list):
            raise A1111Error(422, "img2img needs init_images, a list of base64 images")
        native["init_image"] = init[0]
        native["strength"] = payload.get("denoising_strength", 0.75)
        if payload.get("mask"):
            native.update(mask=payload["mask"], mask_blur=payload.get("mask_blur", 4),
                          invert_mask=bool(payload.get("inpainting_mask_invert", 0)))  # fmt: skip
    elif payload.get("enable_hr"):
        hires: dict[str, Any] = {
            "upscaler": _hires_upscaler(payload.get("hr_upscaler")),
            "steps": payload.get("hr_second_pass_steps") or 0,
            "denoising_strength": payload.get("denoising_strength") or 0.7,
        }
        if payload.get("hr_resize_x") or payload.get("hr_resize_y"):
            hires.update(width=payload.get("hr_resize_x") or None, height=payload.get("hr_resize_y") or None)
        else:
            hires["scale"] = payload.get("hr_scale") or 2.0
        native["hires"] = hires
    return {k: v for k, v in native.items() if v is not None}


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
    payload = await _json(request)
    options = _options(request)
    if not options.get("sd_model_checkpoint"):
        options["sd_model_checkpoint"] = await run_in_threadpool(_current_checkpoint, svc)
    native = _native(payload, options, img2img)
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


@_a1111
async def txt2img(request: Request) -> Response:
    return await _generate(request, img2img=False)


@_a1111
async def img2img(request: Request) -> Response:
    return await _generate(request, img2img=True)


def _upscale_request(image: str, payload: dict[str, Any]) -> dict[str, Any]:
    name = payload.get("upscaler_1")
    if not name or name == "None":
        raise A1111Error(422, "choose upscaler_1: a library upscaler (GET /sdapi/v1/upscalers)")
    return {"image": image, "model": name, "factor": payload.get("upscaling_resize", 2)}


@_a1111
async def extra_single_image(request: Request) -> Response:
    svc = services(request)
    payload = await _json(request)
    job = await _run(request, _upscale_request(payload.get("image", ""), payload), UpscaleRequest)
    ((data, _),) = await run_in_threadpool(_read, svc, job)
    return JSONResponse({"html_info": "", "image": base64.b64encode(data).decode()})


@_a1111
async def extra_batch_images(request: Request) -> Response:
    svc = services(request)
    payload = await _json(request)
    results = []
    items = payload.get("imageList") or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise A1111Error(422, 'imageList must be a list of {"data": <base64 image>}')
    for item in items:
        job = await _run(request, _upscale_request(item.get("data", ""), payload), UpscaleRequest)
        ((data, _),) = await run_in_threadpool(_read, svc, job)
        results.append(base64.b64encode(data).decode())
    return JSONResponse({"html_info": "", "images": results})


@_a1111
async def png_info(request: Request) -> Response:
    payload = await _json(request)
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


@_a1111
async def progress(request: Request) -> Response:
    svc = services(request)
    snapshot = svc.queue.snapshot()
    running, live = snapshot["running"], snapshot["progress"] or {}
    job_count = len(snapshot["queued"]) + (1 if running else 0)
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


@_a1111
async def interrupt(request: Request) -> Response:
    svc = services(request)
    running = svc.queue.snapshot()["running"]
    if running:
        await run_in_threadpool(svc.queue.cancel, running, viewer(request))
    return JSONResponse(None)


def _title(view: ModelView, hashes: tuple[str, str] | None) -> str:
    return f"{view.name} [{hashes[0][:10]}]" if hashes else view.name


def _sd_models(svc: Services) -> list[dict[str, Any]]:
    found = []
    for view in svc.views.all():
        if view.role not in GENERATORS or view.broken or view.plan is None:
            continue
        entry = svc.catalog.find_path(view.path)
        hashes = svc.catalog.cached_hashes(entry) if entry is not None else None
        if hashes is None:
            svc.queue.hasher.request(view.path)  # real hashes, not placeholders: ready on a later call
        found.append({
            "title": _title(view, hashes), "model_name": Path(view.name).stem,
            "hash": hashes[0][:10] if hashes else None, "sha256": hashes[0] if hashes else None,
            "filename": view.path, "config": None,
        })  # fmt: skip
    return found


@_a1111
async def sd_models(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_sd_models, services(request)))


def _role_files(svc: Services, role: str) -> list[ModelView]:
    return [v for v in svc.views.all() if v.role == role and not v.broken]


@_a1111
async def sd_vae(request: Request) -> Response:
    views = await run_in_threadpool(_role_files, services(request), "vae")
    return JSONResponse([{"model_name": Path(v.name).stem, "filename": v.path} for v in views])


@_a1111
async def sd_modules(request: Request) -> Response:
    views = await run_in_threadpool(_role_files, services(request), "text_encoder")
    return JSONResponse([{"model_name": Path(v.name).stem, "filename": v.path} for v in views])


@_a1111
async def loras(request: Request) -> Response:
    views = await run_in_threadpool(_role_files, services(request), "lora")
    return JSONResponse([{"name": Path(v.name).stem, "alias": Path(v.name).stem, "path": v.path, "metadata": {}}
                         for v in views])  # fmt: skip


@_a1111
async def embeddings(request: Request) -> Response:
    views = await run_in_threadpool(_role_files, services(request), "embedding")
    loaded = {Path(v.name).stem: {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                                  "shape": 768, "vectors": v.details.get("vectors", 1)} for v in views}  # fmt: skip
    return JSONResponse({"loaded": loaded, "skipped": {}})


@_a1111
async def samplers(request: Request) -> Response:
    return JSONResponse([{"name": images.SAMPLER_NAMES.get(s, s), "aliases": [s], "options": {}} for s in SAMPLERS])


@_a1111
async def schedulers(request: Request) -> Response:
    labels = images.SCHEDULE_TYPES
    return JSONResponse([
        {"name": s, "label": labels.get(s, s), "aliases": None, "default_rho": -1, "need_inner_model": False}
        for s in SCHEDULERS
    ])  # fmt: skip


@_a1111
async def upscalers(request: Request) -> Response:
    views = await run_in_threadpool(_role_files, services(request), "upscaler")
    builtin = [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
               for name in ("None", "Lanczos", "Nearest")]  # fmt: skip
    models = [{"name": Path(v.name).stem, "model_name": "ESRGAN", "model_path": v.path, "model_url": None,
               "scale": v.details.get("scale", 4)} for v in views]  # fmt: skip
    return JSONResponse(builtin + models)


@_a1111
async def latent_upscale_modes(request: Request) -> Response:
    return JSONResponse([{"name": label} for label in HIRES_LABELS.values()])


@_a1111
async def memory(request: Request) -> Response:
    ram = await run_in_threadpool(host.memory)
    total, free = ram.get("total") or 0, ram.get("available") or 0
    return JSONResponse({"ram": {"free": free, "used": total - free, "total": total},
                         "cuda": {"error": "sd.cpp manages device memory; see GET /api/v1/system"}})  # fmt: skip


@_a1111
async def cmd_flags(request: Request) -> Response:
    settings = services(request).settings
    return JSONResponse({"api": True, "listen": settings.host != "127.0.0.1", "port": settings.port,
                         "ckpt_dir": str(settings.models_path), "data_dir": str(settings.data_dir)})  # fmt: skip


@_a1111
async def refresh_checkpoints(request: Request) -> Response:
    svc = services(request)
    svc.views.invalidate()
    await run_in_threadpool(svc.catalog.scan)
    return JSONResponse(None)


def _current_checkpoint(svc: Services) -> str | None:
    """What A1111 would call the current checkpoint: the loaded model, else the library's first generating one (A1111
    always has one loaded; clients that never set one expect that)."""
    loaded = svc.queue.loaded_plan() or {}
    main = loaded.get("model_path") or loaded.get("diffusion_model_path")
    entry = svc.catalog.find_path(main) if main else None
    if entry is not None:
        return entry.name
    names = sorted(v.name for v in svc.views.all() if v.role in GENERATORS and not v.broken and v.plan is not None)
    return names[0] if names else None


@_a1111
async def get_options(request: Request) -> Response:
    options = _options(request)
    if options.get("sd_model_checkpoint") is None:
        options["sd_model_checkpoint"] = await run_in_threadpool(_current_checkpoint, services(request))
    return JSONResponse(options)


@_a1111
async def set_options(request: Request) -> Response:
    """Store the options (unknown keys too: Open WebUI posts back the whole dict it read); a new
    `sd_model_checkpoint` is loaded through the queue before the call returns."""
    svc = services(request)
    payload = await _json(request)
    options = _options(request)
    wanted = _model_name(payload.get("sd_model_checkpoint"))
    if wanted and wanted != _model_name(options.get("sd_model_checkpoint")):
        await _load(request, svc, wanted)
    options.update(payload)
    if wanted:
        options["sd_model_checkpoint"] = wanted
    return JSONResponse(None)


async def _load(request: Request, svc: Services, name: str) -> None:
    def plan() -> Load:
        entry = choose_model(svc.catalog, name, None)
        try:
            made = make_plan(entry, svc.catalog.entries)
        except PlanError as e:
            raise A1111Error(422, str(e)) from e
        return Load(model=ModelUse(entry.name, made.architecture, made.args, entry.path))

    job = JobRecord(id=uuid.uuid4().hex, status=QUEUED, created_at=time.time(), spec=await run_in_threadpool(plan),
                    owner=owner(request))  # fmt: skip
    await run_in_threadpool(svc.queue.submit, job)
    done = await wait_for_job(svc, job)
    if done.status != COMPLETED:
        raise A1111Error(500, (done.error or {}).get("message", f"loading {name} {done.status}"))


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
