"""Turn a generation request into a queued job: resolve the model and LoRAs, fill in defaults, check every limit.

Everything a job could fail on that is knowable before it runs is refused here, as a 422 naming the field: a model
that is missing, broken or lacks companions, a LoRA not in the library or made for another model family, a size the
architecture cannot produce.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from typing import Any

from sdrest.errors import Invalid
from sdrest.jobs.store import QUEUED, JobRecord
from sdrest.library.architectures import ARCHITECTURES, Arch
from sdrest.library.catalog import Catalog, ModelFile, UnknownModel
from sdrest.library.plan import PlanError, make_plan
from sdrest.schemas import GenerateRequest
from sdrest.settings import Settings

LORA_TAG = re.compile(r"<lora:([^:>]+):([^>]+)>")
GENERATORS = ("checkpoint", "diffusion_model")
# LoRA targets each model family accepts (a LoRA for another family crashes sd.cpp or does nothing).
_LORA_FAMILIES = {"sd1": "sd1", "sd2": "sd2", "sdxl": "sdxl", "sd3": "sd3", "flux": "flux", "wan": "wan",
                  "qwen_image": "qwen_image", "z_image": "z_image"}  # fmt: skip
# Distilled UNets keep SD's layer names for blocks of other shapes, so a full-size LoRA makes sd.cpp abort mid-job
# (measured on SD 1.x Tiny UNet and SDXS-512; the SD 2.x ones are built the same way).
_NO_FULL_SIZE_LORAS = ("sd1_tiny_unet", "sdxs_512_ds", "sd2_tiny_unet", "sdxs_09")


def choose_model(catalog: Catalog, name: str | None, loaded: dict[str, str] | None) -> ModelFile:
    """The named model; without a name the loaded one, else the library's only generating model."""
    if name:
        try:
            return catalog.get(name, roles=GENERATORS)
        except UnknownModel as e:
            raise Invalid(str(e), field="$.model") from e
    candidates = [e for e in catalog.entries if e.role in GENERATORS and not e.broken]
    for entry in candidates:
        if loaded is not None and entry.path in loaded.values():
            return entry
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise Invalid(
            f"the library ({catalog.models_dir}) has no model that generates images: put one in its checkpoints/ or "
            "diffusion_models/ folder",
            field="$.model",
        )
    names = ", ".join(e.name for e in candidates[:10])
    raise Invalid(f"name a model: the library has {len(candidates)} ({names})", field="$.model")


def _resolve_loras(request: GenerateRequest, catalog: Catalog, arch: Arch) -> list[tuple[str, float]]:
    """The LoRA files to apply, from prompt tags and the `loras` field, as (absolute path, weight)."""
    found: list[tuple[str, float, str]] = []
    for match in LORA_TAG.finditer(request.prompt):
        try:
            weight = float(match.group(2))
        except ValueError:
            raise Invalid(f"the LoRA tag {match.group(0)} has no numeric weight", field="$.prompt") from None
        found.append((match.group(1), weight, "$.prompt"))
    found += [(spec.name, spec.weight, f"$.loras[{i}].name") for i, spec in enumerate(request.loras)]
    loras: dict[str, float] = {}
    for name, weight, field in found:
        try:
            entry = catalog.get(name, roles=("lora",))
        except UnknownModel as e:
            raise Invalid(f"unknown LoRA: {e}", field=field) from e
        if entry.broken:
            raise Invalid(f"the LoRA {entry.name} cannot be read: {entry.error}", field=field)
        target = entry.details.get("target", "unknown")
        family = _LORA_FAMILIES.get(arch.family)
        if target != "unknown" and family is not None and target != family:
            raise Invalid(f"the LoRA {entry.name} is for {target} models; {arch.label} is {family}", field=field)
        if arch.id in _NO_FULL_SIZE_LORAS and target == family:
            raise Invalid(
                f"sd.cpp cannot apply {target} LoRAs to {arch.label}: its layers have other shapes and the engine "
                f"would abort",
                field=field,
            )
        if ":" in entry.path or ">" in entry.path:
            raise Invalid(f"the LoRA file name {entry.name} contains ':' or '>', which sd.cpp cannot read", field=field)
        loras[entry.path] = loras.get(entry.path, 0.0) + weight
    return list(loras.items())


def _check_size(name: str, value: int, arch: Arch, settings: Settings) -> None:
    field = f"$.{name}"
    if not 64 <= value <= settings.max_side:
        raise Invalid(f"{name} must be between 64 and {settings.max_side} pixels, not {value}", field=field)
    if value % arch.size_multiple:
        raise Invalid(f"{name} must be a multiple of {arch.size_multiple} for {arch.label}, not {value}", field=field)


def prepare(
    request: GenerateRequest, catalog: Catalog, settings: Settings, loaded: dict[str, str] | None = None
) -> JobRecord:
    """A queued job for `request`, or an `Invalid` error naming what is wrong."""
    if len(request.prompt) > settings.max_prompt_chars or len(request.negative_prompt) > settings.max_prompt_chars:
        field = "$.prompt" if len(request.prompt) > settings.max_prompt_chars else "$.negative_prompt"
        raise Invalid(f"prompts are limited to {settings.max_prompt_chars} characters", field=field)
    if request.batch_count > settings.max_batch:
        raise Invalid(f"batch_count is limited to {settings.max_batch}", field="$.batch_count")
    entry = choose_model(catalog, request.model, loaded)
    if entry.broken:
        raise Invalid(f"{entry.name} cannot be read: {entry.error}", field="$.model")
    overrides = {k: v for k, v in (("vae", request.vae), ("taesd", request.taesd)) if v is not None}
    try:
        plan = make_plan(entry, catalog.entries, overrides=overrides)
    except PlanError as e:
        field = "$.vae" if str(e).startswith("vae:") else "$.taesd" if str(e).startswith("taesd:") else "$.model"
        raise Invalid(str(e), field=field) from e
    crash = catalog.crashed(plan.args.values())
    if crash:
        raise Invalid(f"{entry.name} is marked broken: {crash}. Replace the file to try again", field="$.model")
    arch = ARCHITECTURES[plan.architecture]
    width = request.width or arch.default_size
    height = request.height or arch.default_size
    _check_size("width", width, arch, settings)
    _check_size("height", height, arch, settings)
    if width * height > settings.max_pixels:
        raise Invalid(f"{width}x{height} is more than the {settings.max_pixels}-pixel limit", field="$.width")
    loras = _resolve_loras(request, catalog, arch)
    seed = request.seed if request.seed >= 0 else secrets.randbelow(2**32)
    params: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "width": width,
        "height": height,
        "steps": request.steps or arch.default_steps,
        "cfg_scale": request.cfg_scale if request.cfg_scale is not None else arch.default_cfg,
        "guidance": request.guidance,
        "sampling_method": request.sampling_method or arch.default_sampler,
        "scheduler": request.scheduler,
        "eta": request.eta,
        "seed": seed,
        "batch_count": request.batch_count,
        "clip_skip": request.clip_skip,
        "output_format": request.output_format,
    }
    if request.loras:
        params["loras"] = [{"name": spec.name, "weight": spec.weight} for spec in request.loras]
    if request.vae is not None or request.taesd is not None:
        params["vae"], params["taesd"] = request.vae, request.taesd
    if request.preview is not None:
        params["preview"] = {"method": request.preview.method, "interval": request.preview.interval}
    return JobRecord(
        id=uuid.uuid4().hex,
        kind="txt2img",
        status=QUEUED,
        created_at=time.time(),
        model=entry.name,
        architecture=arch.id,
        params=params,
        plan=plan.args,
        loras=loras,
    )
