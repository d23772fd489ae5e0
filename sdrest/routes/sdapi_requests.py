"""How an A1111 payload becomes a native request: its JSON body, its sampler, scheduler and hires names (labels,
sd.cpp ids or old combined names), and the txt2img/img2img and upscale payloads as native request dicts.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from sdrest import images
from sdrest.jobs.infotexts import HIRES_LABELS
from sdrest.routes.sdapi_errors import A1111Error
from sdrest.schemas import SAMPLERS, SCHEDULERS

_BY_LABEL = {label.lower(): sid for sid, label in images.SAMPLER_NAMES.items()}
_SCHEDULE_BY_LABEL = {label.lower(): sid for sid, label in images.SCHEDULE_TYPES.items()}
_HIRES_BY_LABEL = {label.lower(): mode for mode, label in HIRES_LABELS.items()}


async def json_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object (an empty body is `{}`)."""
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError as e:
        raise A1111Error(422, f"the body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise A1111Error(422, "the body must be a JSON object")
    return data


def _text(value: Any, name: str) -> str | None:
    """A text field of a payload: None or a string (anything else is the client's error, not a crash)."""
    if value is None or isinstance(value, str):
        return value
    raise A1111Error(422, f"{name} must be a string")


def model_name(title: Any) -> str | None:
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


def native_request(payload: dict[str, Any], options: dict[str, Any], img2img: bool) -> dict[str, Any]:
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
        "model": model_name(settings.get("sd_model_checkpoint")),
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


def upscale_request(image: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A native upscale request (as a dict) for one image of an A1111 extras payload."""
    name = payload.get("upscaler_1")
    if not name or name == "None":
        raise A1111Error(422, "choose upscaler_1: a library upscaler (GET /sdapi/v1/upscalers)")
    return {"image": image, "model": name, "factor": payload.get("upscaling_resize", 2)}
