"""A1111's listing routes: the library's models by kind (checkpoints, VAEs, text encoders, LoRAs, embeddings,
upscalers), the samplers, schedulers and hires modes, memory and command-line flags, and the rescan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sdrest import host, images
from sdrest.jobs.admission import GENERATORS
from sdrest.jobs.infotexts import HIRES_LABELS
from sdrest.routes.jobs import services
from sdrest.routes.sdapi_errors import a1111_errors
from sdrest.schemas import SAMPLERS, SCHEDULERS
from sdrest.services import Services
from sdrest.views import ModelView


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


@a1111_errors
async def sd_models(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_sd_models, services(request)))


def _role_files(svc: Services, role: str) -> list[ModelView]:
    return [v for v in svc.views.all() if v.role == role and not v.broken]


@a1111_errors
async def sd_vae(request: Request) -> Response:
    views = await run_in_threadpool(_role_files, services(request), "vae")
    return JSONResponse([{"model_name": Path(v.name).stem, "filename": v.path} for v in views])


@a1111_errors
async def sd_modules(request: Request) -> Response:
    views = await run_in_threadpool(_role_files, services(request), "text_encoder")
    return JSONResponse([{"model_name": Path(v.name).stem, "filename": v.path} for v in views])


@a1111_errors
async def loras(request: Request) -> Response:
    views = await run_in_threadpool(_role_files, services(request), "lora")
    return JSONResponse([{"name": Path(v.name).stem, "alias": Path(v.name).stem, "path": v.path, "metadata": {}}
                         for v in views])  # fmt: skip


@a1111_errors
async def embeddings(request: Request) -> Response:
    views = await run_in_threadpool(_role_files, services(request), "embedding")
    loaded = {Path(v.name).stem: {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                                  "shape": 768, "vectors": v.details.get("vectors", 1)} for v in views}  # fmt: skip
    return JSONResponse({"loaded": loaded, "skipped": {}})


@a1111_errors
async def samplers(request: Request) -> Response:
    return JSONResponse([{"name": images.SAMPLER_NAMES.get(s, s), "aliases": [s], "options": {}} for s in SAMPLERS])


@a1111_errors
async def schedulers(request: Request) -> Response:
    labels = images.SCHEDULE_TYPES
    return JSONResponse([
        {"name": s, "label": labels.get(s, s), "aliases": None, "default_rho": -1, "need_inner_model": False}
        for s in SCHEDULERS
    ])  # fmt: skip


@a1111_errors
async def upscalers(request: Request) -> Response:
    views = await run_in_threadpool(_role_files, services(request), "upscaler")
    builtin = [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
               for name in ("None", "Lanczos", "Nearest")]  # fmt: skip
    models = [{"name": Path(v.name).stem, "model_name": "ESRGAN", "model_path": v.path, "model_url": None,
               "scale": v.details.get("scale", 4)} for v in views]  # fmt: skip
    return JSONResponse(builtin + models)


@a1111_errors
async def latent_upscale_modes(request: Request) -> Response:
    return JSONResponse([{"name": label} for label in HIRES_LABELS.values()])


@a1111_errors
async def memory(request: Request) -> Response:
    ram = await run_in_threadpool(host.memory)
    total, free = ram.get("total") or 0, ram.get("available") or 0
    return JSONResponse({"ram": {"free": free, "used": total - free, "total": total},
                         "cuda": {"error": "sd.cpp manages device memory; see GET /api/v1/system"}})  # fmt: skip


@a1111_errors
async def cmd_flags(request: Request) -> Response:
    settings = services(request).settings
    return JSONResponse({"api": True, "listen": settings.host != "127.0.0.1", "port": settings.port,
                         "ckpt_dir": str(settings.models_path), "data_dir": str(settings.data_dir)})  # fmt: skip


@a1111_errors
async def refresh_checkpoints(request: Request) -> Response:
    svc = services(request)
    svc.views.invalidate()
    await run_in_threadpool(svc.catalog.scan)
    return JSONResponse(None)
